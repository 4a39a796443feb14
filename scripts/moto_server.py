#!/usr/bin/env python3
"""moto's server for the SQS integration tests, with moto entered by one request at a time.

Why not `moto_server`: moto 5.2.5's SQS backend is not safe under concurrent requests. Its
threaded server let two DeleteMessage calls each rebuild the queue's message list from the
same snapshot, so one delete undid the other and a deleted message came back 30 s later.
Here every call into moto holds one lock, so moto only ever sees one request at a time.

Why not a single-threaded server, which would also give one request at a time: long polling.
moto implements WaitTimeSeconds by waiting inside the request, so a consumer polling an empty
queue for 20 s would block every other client (including the SendMessage that would end the
wait) for those 20 s. So connections are read and answered on their own threads, outside the
lock, and a ReceiveMessage that finds nothing waits with the lock released (a condition
variable), trying again when another request may have made a message available, or every
RECHECK_SECONDS for visibility timeouts and delays that run out. Each try runs moto's own
receive with no wait, under the lock.

Two more patches make moto's SQS usable beyond a few hundred messages without changing what
it answers: a cheap clock (moto's took ~10 us a call, made once per queued message on every
send and receive) and a retention check that does not count the whole queue for each message
received. ReceiveMessage on a 20,000-message queue went from 13 s to 7 ms. SendMessage and
DeleteMessage still cost time in proportion to the queue (moto scans it), which limits useful
queue sizes to a few thousand. Each patch is checked against the pinned moto at start.

werkzeug's development server always answers `Connection: close`, so there is no keep-alive:
each request is one loopback connection, cheap next to moto's own work (~5 ms a request).

    scripts/moto_server.py [--port 0] [--exit-with-stdin] [--no-serialize]

Prints exactly one line, `listening on http://127.0.0.1:PORT`, once it serves. Binds 127.0.0.1
only. Ends cleanly on SIGTERM or SIGINT. GET /_launcher/stats answers
`{"requests": N, "in_flight": N, "max_concurrency": N, "long_polls": N}`: how many requests
moto served, how many are inside it now, the most that ever were at once (1 unless the lock is
broken), and how many ReceiveMessage calls are waiting for a message.
"""

import argparse
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import parse_qs

# The moto this launcher's patches were checked against (tests/requirements.txt pins it).
MOTO_VERSION = "5.2.5"


def check_moto_version():
    """Refuses any other moto: the patches below are written against this one's internals."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != MOTO_VERSION:
        found = f"moto {version} is" if version else "moto is not"
        sys.exit(
            f"moto_server.py: {found} installed for {sys.executable}, but this launcher is "
            f"written for moto {MOTO_VERSION} (tests/requirements.txt; scripts/test-tools.sh "
            "installs it). Re-check its patches before changing the pin."
        )


# Before importing moto's internals, which differ between versions.
check_moto_version()

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import SQSBackend  # noqa: E402
from werkzeug.serving import ThreadedWSGIServer  # noqa: E402
from werkzeug.test import Client  # noqa: E402
from werkzeug.wsgi import get_input_stream  # noqa: E402

# How often a waiting ReceiveMessage looks again when nothing woke it: the time a message whose
# visibility timeout (or delay) ran out may go unnoticed by a long poll.
RECHECK_SECONDS = 0.1

# Actions after which no message can have become receivable, so long polls are not woken.
# Everything else (sends, visibility changes, deletes that free a FIFO group, ...) wakes them.
# A receive can fill a DLQ; a poll on the DLQ notices at its next RECHECK_SECONDS.
NO_NEW_MESSAGES = {
    "ReceiveMessage",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListQueues",
    "ListQueueTags",
    "ListDeadLetterSourceQueues",
}


class Gate:
    """The one way into moto: a lock (when serializing) and the counters that prove it holds.

    The counters have their own lock so they stay exact in --no-serialize mode too, which is
    how the test shows that the probe would see concurrency if there were any.
    """

    def __init__(self, serialize):
        self.serialize = serialize
        # A condition rather than a bare lock: a long poll waits on it, giving the lock up.
        self.moto = threading.Condition()
        self.counts = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_concurrency = 0
        self.long_polls = 0
        # The socket of the request this thread is serving, to notice a client that hung up.
        self.current = threading.local()

    def enter(self):
        with self.counts:
            self.in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self.in_flight)

    def leave(self):
        with self.counts:
            self.in_flight -= 1

    def stats(self):
        with self.counts:
            return {
                "requests": self.requests,
                "in_flight": self.in_flight,
                "max_concurrency": self.max_concurrency,
                "long_polls": self.long_polls,
            }

    def long_poll_started(self):
        with self.counts:
            self.long_polls += 1

    def long_poll_ended(self):
        with self.counts:
            self.long_polls -= 1

    def wait(self, timeout):
        """Gives moto up to other requests for at most `timeout` s (the lock is held)."""
        self.leave()
        self.moto.wait(timeout)
        self.enter()

    def client_gone(self):
        """True when the client of this thread's request closed its connection."""
        sock = getattr(self.current, "sock", None)
        if sock is None:
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # open, nothing sent: still waiting for our answer
        except OSError:
            return True


def patch_clock():
    """Gives moto's SQS a cheap clock. moto's `unix_time()` goes through datetime arithmetic
    (~10 us a call) and SQS calls it for every message in the queue on every send and receive
    (the visible/delayed checks), so a ReceiveMessage on a 20,000-message queue took 13 s.
    `time.time()` is the same number (seconds since the epoch, UTC) ~100 times faster."""
    import moto.core.utils as utils
    import moto.sqs.models as models

    if (
        models.unix_time is not utils.unix_time
        or models.unix_time_millis is not utils.unix_time_millis
    ):
        raise RuntimeError("moto.sqs.models no longer uses moto.core.utils' clock")

    def unix_time(dt=None):
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt=None):
        return time.time() * 1000.0 if dt is None else utils.unix_time_millis(dt)

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis


def patch_retention_check():
    """The same retention check without building every queue attribute. moto asks
    get_queue_attributes for MessageRetentionPeriod for each message it returns, which also
    counts the whole queue (ApproximateNumberOf*) three times: O(queue) per message received."""
    import moto.sqs.models as models

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention_period = self.get_queue(queue_name).message_retention_period
        return retention_period + message.sent_timestamp / 1000 > models.unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )


def patch_long_polling(gate):
    """Makes moto's ReceiveMessage wait with the lock released (see the module doc)."""
    original = SQSBackend.receive_message

    def receive_message(
        self,
        queue_name,
        count,
        wait_seconds_timeout,
        visibility_timeout,
        message_attribute_names=None,
    ):
        wait = int(wait_seconds_timeout or 0)
        deadline = time.monotonic() + wait
        messages = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if messages or wait <= 0:
            return messages
        gate.long_poll_started()
        try:
            while not messages:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                gate.wait(min(left, RECHECK_SECONDS))
                # A consumer that hung up mid-poll (one shutting down) must not have messages
                # received for it: they would stay invisible for a whole visibility timeout.
                if gate.client_gone():
                    return []
                messages = original(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            return messages
        finally:
            gate.long_poll_ended()

    SQSBackend.receive_message = receive_message


def action_of(environ, body):
    """The SQS action: from X-Amz-Target (JSON protocol) or the form body (query protocol)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.rsplit(".", 1)[-1]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    return ""


class SerialApp:
    """moto's WSGI app behind the gate, plus the launcher's own /_launcher/stats."""

    def __init__(self, app, gate):
        self.app = app
        self.gate = gate

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/_launcher/"):
            return self.launcher(environ, start_response)

        # Read the whole request before taking the lock: a slow client must not hold it.
        body = get_input_stream(environ, safe_fallback=False).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        action = action_of(environ, body)

        answer = {}

        def capture(status, headers, exc_info=None):
            answer["start"] = (status, headers, exc_info)
            return lambda data: answer.setdefault("written", []).append(data)

        self.gate.current.sock = environ.get("werkzeug.socket")
        if self.gate.serialize:
            self.gate.moto.acquire()
        self.gate.enter()
        try:
            # Build the whole answer inside: moto's lazy response iterables run moto code too.
            result = self.app(environ, capture)
            try:
                payload = b"".join(answer.get("written", [])) + b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            with self.gate.counts:
                self.gate.requests += 1
            if self.gate.serialize and action not in NO_NEW_MESSAGES:
                self.gate.moto.notify_all()
        finally:
            self.gate.leave()
            if self.gate.serialize:
                self.gate.moto.release()
            self.gate.current.sock = None

        start_response(*answer["start"])
        return [payload]

    def launcher(self, environ, start_response):
        if environ["PATH_INFO"] == "/_launcher/stats":
            payload = json.dumps(self.gate.stats()).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]


class QuietHandler(MotoRequestHandler):
    """moto's handler without a log line per request (noise, and time spent under load)."""

    def log_request(self, code="-", size="-"):
        pass


def warm_up(app):
    """Serves one ListQueues in-process, so moto's SQS app is built before the first client
    (and a broken install fails here, before we claim to be listening)."""
    auth = (
        "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )
    response = Client(app).post(
        "/",
        headers={
            "Authorization": auth,
            "X-Amz-Target": "AmazonSQS.ListQueues",
            "Content-Type": "application/x-amz-json-1.0",
        },
        data=b"{}",
    )
    if response.status_code != 200:
        raise RuntimeError(f"moto's SQS warm-up answered {response.status}: {response.text}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 = a free one")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="exit when stdin closes (the parent died): no server outlives its test",
    )
    parser.add_argument(
        "--no-serialize",
        action="store_true",
        help="UNSAFE: let requests into moto concurrently; only to show the probe sees that",
    )
    args = parser.parse_args()

    patch_clock()
    patch_retention_check()
    gate = Gate(serialize=not args.no_serialize)
    if gate.serialize:
        patch_long_polling(gate)
    app = SerialApp(DomainDispatcherApplication(create_backend_app), gate)
    warm_up(app)
    gate.requests = 0  # count the clients' requests only

    server = ThreadedWSGIServer("127.0.0.1", args.port, app, handler=QuietHandler)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.exit_with_stdin:

        def watch_stdin():
            # os.read, not sys.stdin: a thread blocked in a buffered read trips the
            # interpreter's shutdown.
            while os.read(0, 4096):
                pass
            # The main thread is in serve_forever; a signal to ourselves ends it cleanly.
            signal.raise_signal(signal.SIGTERM)

        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"listening on http://127.0.0.1:{server.port}", flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    # Request threads may still be in a long poll: end now instead of in the interpreter's
    # shutdown, which does not always survive daemon threads holding locks.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
