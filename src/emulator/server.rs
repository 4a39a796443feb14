//! The HTTP side of the emulator: a hyper 1 HTTP/1.1 server (keep-alive on) that turns
//! awsJson1_1 requests into operations, and applies, in this order, the in-flight count, the
//! injected latency, the injected faults (dropped connection, then 500), and the
//! requests-per-second quota, before the operation runs.
//!
//! Plain hyper rather than a framework because a dropped connection must be a real one: when the
//! service returns `Err`, hyper closes the connection without writing a response, which is
//! exactly what a client sees when a load balancer or the network gives up mid-request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ops::{self, ApiError};
use super::state::{ErrorCode, Operation, Shared};

/// How long open connections get to finish their in-flight request at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Cognito rejects request bodies over about 1 MB; anything bigger is not a real client.
const MAX_BODY: usize = 1 << 20;

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

/// Accepts connections until `stop` is cancelled, serving each on its own task in `tracker`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tracker.spawn(serve_connection(stream, shared.clone(), stop.clone()));
            }
            Err(err) => {
                // Typically EMFILE under a connection storm: back off briefly instead of
                // spinning, and keep serving the connections we have.
                tracing::warn!("emulator accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracker.close();
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    // Responses are small and written in one go; without NODELAY a keep-alive client can stall
    // on Nagle's algorithm meeting delayed ACKs.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| handle(shared.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        // No idle timeout: like a load balancer with a long idle timeout, connections stay open
        // until the client closes them. (hyper's 30 s default would also need a timer.)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(result) => result,
                Err(_elapsed) => Ok(()),
            }
        }
    };
    if let Err(err) = result {
        // Dropped connections end here by design; nothing to report beyond debug.
        tracing::debug!("emulator connection ended: {err}");
    }
}

type Answer = Result<Response<Full<Bytes>>, Hangup>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Answer {
    // Latency counts from the request's arrival, as a client measures it.
    let arrived = std::time::Instant::now();
    if let Some(path) = req.uri().path().strip_prefix("/_emulator/") {
        return Ok(introspection(&shared, req.method(), path));
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
        if !faults.latency.is_zero() {
            shared.delay.until(arrived + faults.latency).await;
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
    if !shared.quota.try_acquire() {
        shared.counters.throttled.fetch_add(1, Relaxed);
        let err = ApiError::new(ErrorCode::TooManyRequests, "Rate exceeded");
        return Ok(error_response(&shared, &err, request_id));
    }
    Ok(match ops::dispatch(&shared, op, &body, request_id) {
        Ok(body) => json_response(StatusCode::OK, body, request_id),
        Err(err) => error_response(&shared, &err, request_id),
    })
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

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// `GET /_emulator/stats` and `GET /_emulator/sends`: the ground truth for out-of-process users
/// (the README demo, benchmarks driving the release binary).
fn introspection(shared: &Shared, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let body = match path {
        "stats" => serde_json::to_vec(&shared.stats()),
        "sends" => serde_json::to_vec(
            &shared
                .send_counts()
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
