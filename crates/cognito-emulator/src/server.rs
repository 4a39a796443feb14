//! The HTTP side of the emulator: a hyper 1 HTTP/1.1 server (keep-alive on) that turns
//! awsJson1_1 requests into operations, and applies, in this order, the in-flight count, the
//! slow hold, the injected latency, the injected faults (dropped connection, then 500), IAM's
//! refusals (`iam`: no signature, denied), and the requests-per-second quota of the operation's
//! category (AdminCreateUser's UserCreation quota, or the one of everything else), before the
//! operation runs; and after it ran, the faults that lose
//! its answer (a 500 or a dropped connection after acting: the code is sent and recorded, the
//! client cannot know).
//!
//! Plain hyper rather than a framework because a dropped connection must be a real one: when the
//! service returns `Err`, hyper closes the connection without writing a response, which is
//! exactly what a client sees when a load balancer or the network gives up mid-request.
//!
//! # A client hanging up cancels its request
//!
//! With `half_close(false)` (set explicitly below), once a request's body has been read hyper
//! keeps reading the socket while the handler runs, and on EOF or a reset it ends the connection
//! with `IncompleteMessage`, dropping the handler's future. So a client that gives up (its
//! timeout fires and it closes the connection) cancels a request still waiting in the slow hold
//! or the latency, and the operation never runs. Checked by the tests in `tests.rs`. The one
//! case hyper cannot see is a client that pipelines a second request on the same connection
//! (bytes left unread, so the EOF is not reached); the SDKs do not pipeline.
//!
//! # Going down
//!
//! [`run`] alternates between serving and being down. Down means the listener is closed (a
//! connect is refused, as by a crashed or restarting server) and every open connection is
//! dropped without an answer, in-flight requests with it; at the end of the window it binds the
//! same address again. Everything in [`Shared`] (users, ledger, counters, knobs) is untouched.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::iam;
use super::ops::{self, ApiError};
use super::quota::QuotaCategory;
use super::state::{Counters, ErrorCode, Operation, SendAction, Shared};

/// How long open connections get to finish their in-flight request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Cognito rejects request bodies over about 1 MB; anything bigger is not a real client.
const MAX_BODY: usize = 1 << 20;
/// Down windows are capped here, so that the end of the window is always a representable instant.
pub(crate) const MAX_DOWN: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often to retry binding the address again after a down window, when the port is taken.
const REBIND_RETRY: Duration = Duration::from_millis(50);

const JSON_1_1: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.1");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
pub(crate) enum Hangup {
    /// Fault injection chose to drop this request's connection.
    Injected,
    /// The request body could not be read (the client went away or sent garbage framing).
    BadBody,
}

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Injected => f.write_str("connection dropped by fault injection"),
            Self::BadBody => f.write_str("request body could not be read"),
        }
    }
}

impl std::error::Error for Hangup {}

/// A request to go down for `for_` (capped at [`MAX_DOWN`]), sent to [`run`] through
/// `Shared::down`. While already down, it extends the window (never shortens it).
#[derive(Debug)]
pub(crate) struct GoDown {
    pub(crate) for_: Duration,
    /// Told once the listener is closed (a connect is refused from then on) and the open
    /// connections have been told to close.
    pub(crate) listener_closed: Option<oneshot::Sender<()>>,
    /// Told once the open connections are closed too. `POST /_emulator/down` does not ask for
    /// this: its own connection closes only after it answers.
    pub(crate) connections_closed: Option<oneshot::Sender<()>>,
}

/// Per-connection flags the handler sets for `serve_connection`.
#[derive(Debug, Default)]
struct ConnFlags {
    /// This connection carries `POST /_emulator/down`: when the emulator goes down, let it
    /// write that answer before closing, instead of dropping it like the others.
    answer_then_close: AtomicBool,
}

/// Serves on `listener` until `stop` is cancelled, going down (closing the listener and every
/// connection) whenever a [`GoDown`] arrives on `down`, and binding `addr` again after the window.
/// Connection tasks run in `tracker`, which is closed on return.
pub(crate) async fn run(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut down: mpsc::UnboundedReceiver<GoDown>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut listener = listener;
    loop {
        let Some(until) = serve_until_down(listener, &shared, &mut down, &stop, &tracker).await
        else {
            break;
        };
        let Some(relistened) = stay_down(until, addr, &mut down, &stop).await else {
            break;
        };
        listener = relistened;
    }
    tracker.close();
}

/// Accepts connections until `stop` is cancelled (`None`) or a [`GoDown`] arrives. Then it goes
/// down: closes the listener, drops this period's connections, acknowledges the request, and
/// returns when the window will end (counted from the moment the listener closed).
async fn serve_until_down(
    listener: TcpListener,
    shared: &Arc<Shared>,
    down: &mut mpsc::UnboundedReceiver<GoDown>,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Option<Instant> {
    // This serving period's connections: `kill` drops them all at once when going down, and
    // `conns` tells when they are gone. (`tracker` spans all periods, for shutdown.)
    let kill = CancellationToken::new();
    let conns = TaskTracker::new();
    let request = loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return None,
            // The sender lives in `shared`, which this task holds, so `None` never comes.
            Some(request) = down.recv() => break request,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let period = conns.token();
                let (shared, stop, kill) = (shared.clone(), stop.clone(), kill.clone());
                tracker.spawn(async move {
                    serve_connection(stream, shared, stop, kill).await;
                    drop(period);
                });
            }
            Err(err) => {
                // Typically EMFILE under a connection storm: back off briefly instead of
                // spinning, and keep serving the connections we have.
                tracing::warn!("emulator accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Closing the listener is what makes a connect fail with ECONNREFUSED; connections the
    // kernel completed but we had not accepted yet are reset with it.
    drop(listener);
    let until = Instant::now() + request.for_.min(MAX_DOWN);
    shared.counters.downs.fetch_add(1, Relaxed);
    kill.cancel();
    conns.close();
    let GoDown {
        listener_closed,
        connections_closed,
        ..
    } = request;
    // A requester that stopped waiting is no reason not to go down.
    if let Some(tx) = listener_closed {
        let _ = tx.send(());
    }
    // Killed connections end at their next poll; only the one answering `POST
    // /_emulator/down` takes a moment to write its answer, bounded by its grace period.
    tokio::select! {
        () = stop.cancelled() => return None,
        () = conns.wait() => {}
    }
    if let Some(tx) = connections_closed {
        let _ = tx.send(());
    }
    Some(until)
}

/// Stays down until `until` (extended by any [`GoDown`] meanwhile), then binds `addr` again,
/// retrying while the port is taken. `None` when `stop` is cancelled first.
async fn stay_down(
    mut until: Instant,
    addr: SocketAddr,
    down: &mut mpsc::UnboundedReceiver<GoDown>,
    stop: &CancellationToken,
) -> Option<TcpListener> {
    loop {
        tokio::select! {
            () = stop.cancelled() => return None,
            Some(request) = down.recv() => {
                until = until.max(Instant::now() + request.for_.min(MAX_DOWN));
                // Already down, with no connection left: both are true right away.
                let acks = [request.listener_closed, request.connections_closed];
                for tx in acks.into_iter().flatten() {
                    let _ = tx.send(());
                }
            }
            () = tokio::time::sleep_until(until.into()) => {
                match TcpListener::bind(addr).await {
                    Ok(listener) => return Some(listener),
                    Err(err) => {
                        // The port was free during the window, so an outgoing connection may
                        // have been given it as its source port; that one will let go of it.
                        tracing::warn!("emulator cannot listen on {addr} again yet: {err}");
                        until = Instant::now() + REBIND_RETRY;
                    }
                }
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    // Responses are small and written in one go; without NODELAY a keep-alive client can stall
    // on Nagle's algorithm meeting delayed ACKs.
    let _ = stream.set_nodelay(true);
    let flags = Arc::new(ConnFlags::default());
    let service = service_fn({
        let flags = flags.clone();
        move |req| handle(shared.clone(), flags.clone(), req)
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        // No idle timeout: like a load balancer with a long idle timeout, connections stay open
        // until the client closes them. (hyper's 30 s default would also need a timer.)
        .header_read_timeout(None)
        // hyper's default, spelled out because the slow hold depends on it: a read EOF while a
        // request is being handled ends the connection and drops the handler (see the module
        // docs), so a client that gave up does not get its operation run.
        .half_close(false)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    // `Some` when the connection ended by itself, `None` when it is to finish gracefully.
    let ended = tokio::select! {
        // Going down and shutting down are checked first, so that a connection accepted just
        // before either does not start a request.
        biased;
        () = kill.cancelled() => {
            // Read now, not when the select began: the handler sets it mid-request, before it
            // asks to go down.
            if !flags.answer_then_close.load(Relaxed) {
                // Dropping `conn` closes the socket and drops any request being handled,
                // unanswered: what the clients of a crashed server see.
                return;
            }
            None
        }
        () = stop.cancelled() => None,
        result = conn.as_mut() => Some(result),
    };
    let result = match ended {
        Some(result) => result,
        None => {
            // Finish the request being handled (for a while), then close.
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(err) = result {
        // Dropped connections end here by design; nothing to report beyond debug.
        tracing::debug!("emulator connection ended: {err}");
    }
}

type Answer = Result<Response<Full<Bytes>>, Hangup>;

async fn handle(shared: Arc<Shared>, flags: Arc<ConnFlags>, req: Request<Incoming>) -> Answer {
    // Latency counts from the request's arrival, as a client measures it.
    let arrived = Instant::now();
    if let Some(path) = req.uri().path().strip_prefix("/_emulator/") {
        let query = req.uri().query();
        return Ok(introspection(&shared, &flags, req.method(), path, query).await);
    }
    if req.method() != Method::POST {
        return Ok(plain(StatusCode::NOT_FOUND, "not found\n"));
    }
    let op = req
        .headers()
        .get("x-amz-target")
        .map_or(Operation::Unknown, |t| Operation::from_target(t.as_bytes()));
    shared.counters.count_request(op);
    let _in_flight = shared.counters.enter();
    // A SigV4-signed request carries `Authorization` (or, presigned, `X-Amz-Signature` in the
    // query); the emulator checks that it is there, not that it is valid.
    let signed = req.headers().contains_key(hyper::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature="));

    // Read the whole body before any fault, so an answered request leaves the connection
    // reusable (hyper cannot keep a connection whose request body was not consumed).
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Hangup::BadBody),
    };
    let request_id = RequestId::new();
    let request_id = request_id.as_str();

    if shared.faults.any() {
        let faults = shared.faults.get();
        // A slow request is only taken up at the end of its hold; its latency starts there.
        let mut taken_up = arrived;
        if faults.slow_rate > 0.0
            && !faults.slow_latency.is_zero()
            && fastrand::f64() < faults.slow_rate
        {
            taken_up = arrived + faults.slow_latency;
            slow_hold(&shared, taken_up).await;
        }
        if !faults.latency.is_zero() {
            shared.delay.until(taken_up + faults.latency).await;
        }
        if faults.drop_rate > 0.0 && fastrand::f64() < faults.drop_rate {
            shared.counters.connections_dropped.fetch_add(1, Relaxed);
            return Err(Hangup::Injected);
        }
        if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
            shared.counters.errors_injected.fetch_add(1, Relaxed);
            let err = ApiError::new(ErrorCode::InternalError, "Internal server error.");
            return Ok(error_response(&shared, &err, request_id));
        }
    }
    if op == Operation::Unknown {
        let err = ApiError::new(ErrorCode::UnknownOperation, ops::UNKNOWN_OPERATION_MESSAGE);
        return Ok(error_response(&shared, &err, request_id));
    }
    // Refused at AWS's front door (no signature, or IAM denies it): before the quota, so such
    // a request takes no token.
    if let Err(err) = iam::authorize(&shared, op, signed, &body) {
        return Ok(error_response(&shared, &err, request_id));
    }
    let category = QuotaCategory::of(op);
    if !shared.quota_of(category).try_acquire(Instant::now()) {
        if category == QuotaCategory::Resend {
            shared.counters.throttled.fetch_add(1, Relaxed);
        }
        let err = ApiError::new(ErrorCode::TooManyRequests, "Rate exceeded");
        return Ok(error_response(&shared, &err, request_id));
    }
    let answer = ops::dispatch(&shared, op, &body, request_id);
    if shared.faults.any() {
        // After acting: whatever the operation did (a code sent and recorded) stands, and the
        // client is told otherwise, or nothing. This is the fault a retrying client can turn
        // into a second code.
        let faults = shared.faults.get();
        if faults.drop_after_rate > 0.0 && fastrand::f64() < faults.drop_after_rate {
            shared.counters.dropped_after_acting.fetch_add(1, Relaxed);
            return Err(Hangup::Injected);
        }
        if faults.error_after_rate > 0.0 && fastrand::f64() < faults.error_after_rate {
            shared.counters.errors_after_acting.fetch_add(1, Relaxed);
            let err = ApiError::new(ErrorCode::InternalError, "Internal server error.");
            return Ok(error_response(&shared, &err, request_id));
        }
    }
    Ok(match answer {
        Ok(body) => json_response(StatusCode::OK, body, request_id),
        Err(err) => error_response(&shared, &err, request_id),
    })
}

/// Holds a slow request until `until`. Nothing has happened to the request yet (no quota token,
/// no send), so if the client hangs up meanwhile and hyper drops this future (module docs), the
/// request leaves no trace but the `slow_abandoned` count.
async fn slow_hold(shared: &Shared, until: Instant) {
    shared.counters.slow_held.fetch_add(1, Relaxed);
    let abandoned = Abandoned(Some(&shared.counters));
    shared.delay.until(until).await;
    abandoned.disarm();
}

/// Counts a slow hold that never finished: dropped while still armed means the handler's future
/// was dropped mid-hold, because the connection closed.
struct Abandoned<'a>(Option<&'a Counters>);

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(counters) = self.0 {
            counters.slow_abandoned.fetch_add(1, Relaxed);
        }
    }
}

/// A random UUID-shaped request id (`x-amzn-RequestId`), formatted on the stack.
struct RequestId([u8; 36]);

impl RequestId {
    fn new() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bits = fastrand::u128(..);
        let mut buf = [0u8; 36];
        for (i, slot) in buf.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                *slot = b'-';
            } else {
                *slot = HEX[(bits & 0xf) as usize];
                bits >>= 4;
            }
        }
        Self(buf)
    }

    fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written, so this is always valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn json_response(status: StatusCode, body: Bytes, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, JSON_1_1);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    resp
}

fn error_response(shared: &Shared, err: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    shared.counters.count_error(err.code);
    let status = StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = json_response(status, err.body(), request_id);
    resp.headers_mut()
        .insert(ERROR_TYPE, HeaderValue::from_static(err.code.name()));
    resp
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(text.into()));
    *resp.status_mut() = status;
    resp
}

/// The test-instrument API for out-of-process users (the README demo, benchmarks driving the
/// release binary): `GET /_emulator/stats`, `GET /_emulator/sends` and `GET /_emulator/rates`
/// (accepted and throttled requests per second) are the ground truth, `POST
/// /_emulator/down?for=DURATION` takes the emulator down, `POST /_emulator/quota?rps=N` or
/// `?schedule=...` changes the quota.
async fn introspection(
    shared: &Shared,
    flags: &ConnFlags,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let body = match (path, method) {
        ("down", &Method::POST) => return go_down(shared, flags, query).await,
        ("down", _) => return plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        ("quota", &Method::POST) => return set_quota(shared, query),
        ("quota", _) => return plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        ("stats" | "sends" | "invitations" | "rates", m) if m != Method::GET => {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        ("stats", _) => serde_json::to_vec(&shared.stats()),
        ("rates", _) => {
            let category = match category_param(query) {
                Ok(c) => c,
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
            };
            let quota = shared.quota_of(category);
            serde_json::to_vec(&serde_json::json!({
                "category": category.as_str(),
                "quota_rps": quota.current(),
                // Where "now" falls among the seconds, so a client can line its own events up.
                "elapsed_s": quota.elapsed(Instant::now()).as_secs_f64(),
                "seconds": quota.seconds(),
            }))
        }
        ("sends", _) => serde_json::to_vec(
            &shared
                .send_counts(SendAction::Confirm)
                .into_iter()
                .collect::<BTreeMap<String, usize>>(),
        ),
        ("invitations", _) => serde_json::to_vec(
            &shared
                .send_counts(SendAction::Invite)
                .into_iter()
                .collect::<BTreeMap<String, usize>>(),
        ),
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    match body {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stats not serializable\n",
        ),
    }
}

/// The `category=` parameter (`resend`, the default, or `user_creation`).
fn category_param(query: Option<&str>) -> Result<QuotaCategory, String> {
    query
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(key, _)| key == "category"))
        .map_or(Ok(QuotaCategory::Resend), |(_, value)| value.parse())
}

/// `POST /_emulator/quota?rps=N` (or `rps=off`) sets the quota now and drops any schedule;
/// `POST /_emulator/quota?schedule=0s=50,20s=20` replaces the schedule, offsets from now. Either
/// takes `&category=user_creation` for the UserCreation quota (default `resend`).
fn set_quota(shared: &Shared, query: Option<&str>) -> Response<Full<Bytes>> {
    let category = match category_param(query) {
        Ok(c) => c,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let params: Vec<(String, String)> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(key, _)| key != "category")
                .collect()
        })
        .unwrap_or_default();
    let target = shared.quota_of(category);
    match params.as_slice() {
        [(key, value)] if key == "rps" => {
            let quota = match value.as_str() {
                "off" => None,
                n => match n.parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        return plain(StatusCode::BAD_REQUEST, "rps is a number or off\n");
                    }
                },
            };
            target.set(quota);
            let shown = quota.map_or_else(|| "off".to_owned(), |q| q.to_string());
            plain(StatusCode::OK, format!("quota {shown}\n"))
        }
        [(key, value)] if key == "schedule" => match value.parse::<super::QuotaSchedule>() {
            Ok(schedule) => {
                let shown = schedule.to_string();
                target.set_schedule(schedule, Instant::now());
                plain(StatusCode::OK, format!("schedule {shown}\n"))
            }
            Err(e) => plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        _ => plain(
            StatusCode::BAD_REQUEST,
            "give one of ?rps=N, ?rps=off or ?schedule=0s=50,20s=20 (and optionally \
             &category=resend|user_creation)\n",
        ),
    }
}

/// `POST /_emulator/down?for=2s` (any humantime duration): `Emulator::go_down` from outside.
/// It answers 200 once the listener is closed, so the caller's next connect is refused; its own
/// connection then closes after the answer, the others at once.
async fn go_down(shared: &Shared, flags: &ConnFlags, query: Option<&str>) -> Response<Full<Bytes>> {
    let for_ = query
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(key, _)| key == "for"))
        .and_then(|(_, value)| humantime::parse_duration(&value).ok());
    let Some(for_) = for_ else {
        return plain(
            StatusCode::BAD_REQUEST,
            "give the window as ?for=DURATION, e.g. ?for=2s\n",
        );
    };
    // Before asking: the connection checks this when told to close.
    flags.answer_then_close.store(true, Relaxed);
    let (listener_closed, closed) = oneshot::channel();
    let request = GoDown {
        for_,
        listener_closed: Some(listener_closed),
        // Not waiting for the connections: this one closes only after answering.
        connections_closed: None,
    };
    if shared.down.send(request).is_err() || closed.await.is_err() {
        // The accept loop has ended: the emulator is shutting down.
        return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    let window = humantime::format_duration(for_.min(MAX_DOWN));
    plain(StatusCode::OK, format!("down for {window}\n"))
}
