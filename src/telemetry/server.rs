//! The HTTP endpoint operators and orchestrators read: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive and not stuck) and `/readyz` (configured, and able to work).
//!
//! `/healthz` answers 200 unless a component registered a health check that fails: `consume`'s
//! poller does (see `source::sqs`), so a consumer that cannot receive for minutes answers 503
//! with the reason, and an orchestrator's liveness probe restarts it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::Locked;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// A liveness probe: `Err(why)` when the process is stuck (what is stuck, and why, is the
/// probing part's to say: `/healthz` shows it).
pub(crate) type HealthCheck = Arc<dyn Fn() -> Result<(), Unhealthy> + Send + Sync>;

/// Why a liveness probe failed, as its part says it.
pub(crate) type Unhealthy = Box<dyn std::error::Error + Send + Sync>;

/// Shared readiness, flipped by the command, and the health check `/healthz` runs.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    ready: Arc<AtomicBool>,
    health: Arc<Mutex<Option<HealthCheck>>>,
}

impl Readiness {
    /// Marks the process ready (or not).
    pub(crate) fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Makes `/healthz` run `check` (replacing any earlier one).
    pub(crate) fn set_health_check(&self, check: HealthCheck) {
        *self.health.locked() = Some(check);
    }

    /// `/healthz` answers 200 again without asking anyone.
    pub(crate) fn clear_health_check(&self) {
        *self.health.locked() = None;
    }

    /// What `/healthz` says: `Err(reason)` when the registered check fails.
    pub(crate) fn health(&self) -> Result<(), Unhealthy> {
        // Cloned out first: the check takes its own locks.
        let check = self.health.locked().clone();
        check.map_or(Ok(()), |c| c())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    ready: Readiness,
}

/// Binds `addr` and serves until `stop` is cancelled. Returns the bound address (port 0 picks
/// one) and the serving task.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    ready: Readiness,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("metrics server failed: {e}");
        }
    });
    Ok((local, task))
}

async fn render(State(s): State<AppState>) -> impl IntoResponse {
    // The process metrics as of this scrape.
    super::metrics::collect_process();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    match s.ready.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_fails_with_the_reason_the_health_check_gives() {
        let ready = Readiness::default();
        let state = AppState {
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            ready: ready.clone(),
        };
        let answer = |state: AppState| async move {
            let response = healthz(State(state)).await.into_response();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .expect("a small body");
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        assert_eq!(answer(state.clone()).await.0, StatusCode::OK);
        ready.set_health_check(Arc::new(|| Err("the poller is stuck".into())));
        let (status, body) = answer(state.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("the poller is stuck"), "{body}");
        ready.clear_health_check();
        assert_eq!(answer(state).await.0, StatusCode::OK);
    }
}
