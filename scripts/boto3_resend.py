#!/usr/bin/env python3
"""The script a team would write instead of cognito-resend: a boto3 thread pool.

Reads usernames from a CSV (first column, header `username`), calls ResendConfirmationCode for
each from a pool of --concurrency threads sharing one client, and lets botocore's retry mode
(`adaptive` by default: a client-side rate limiter per process that backs off on throttles)
handle TooManyRequestsException. Used by scripts/bench-quota.sh as the baseline, against the
bundled emulator only (loopback).

Prints one JSON line: calls answered per kind and the wall time.
"""

import argparse
import collections
import concurrent.futures
import csv
import json
import sys
import threading
import time

import boto3
import botocore.exceptions
from botocore.config import Config


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--retry-mode", default="adaptive", choices=["adaptive", "standard", "legacy"])
    p.add_argument("--max-attempts", type=int, default=10)
    args = p.parse_args()
    if not args.endpoint.startswith(("http://127.", "http://localhost", "http://[::1]")):
        sys.exit("boto3_resend: only a loopback endpoint (the bundled emulator) is allowed")

    with open(args.csv, newline="") as f:
        users = [row["username"] for row in csv.DictReader(f) if row.get("username")]

    client = boto3.session.Session().client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=args.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"mode": args.retry_mode, "max_attempts": args.max_attempts},
            max_pool_connections=args.concurrency,
            connect_timeout=5,
            read_timeout=30,
        ),
    )
    outcomes = collections.Counter()
    lock = threading.Lock()

    def resend(username):
        try:
            client.resend_confirmation_code(ClientId=args.client_id, Username=username)
            kind = "sent"
        except botocore.exceptions.ClientError as e:
            kind = e.response["Error"]["Code"]
        except botocore.exceptions.BotoCoreError as e:
            kind = type(e).__name__
        with lock:
            outcomes[kind] += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(resend, users))
    wall = time.monotonic() - started
    print(json.dumps({"users": len(users), "wall_s": round(wall, 3), "outcomes": outcomes}))


if __name__ == "__main__":
    main()
