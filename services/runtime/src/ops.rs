//! The operational endpoints every weir service serves: `/metrics` (Prometheus text),
//! `/healthz` (the process is alive) and `/readyz` (it can do its work now).
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Readiness shared between a service's workers and its `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    reason: Arc<Mutex<String>>,
}

impl Health {
    pub fn new() -> Self {
        let h = Self::default();
        h.set_not_ready("starting");
        h
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn set_not_ready(&self, why: impl Into<String>) {
        if let Ok(mut r) = self.reason.lock() {
            *r = why.into();
        }
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Routes for `/metrics`, `/healthz`, `/readyz`; merge into a service's own router.
pub fn router(health: Health) -> Router {
    let handle = crate::telemetry::metrics_handle();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], h.render()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let h = health.clone();
                async move {
                    if h.is_ready() {
                        (StatusCode::OK, "ready\n".to_string()).into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}\n", h.reason()),
                        )
                            .into_response()
                    }
                }
            }),
        )
}

/// Serves the ops routes on an already bound listener (so the caller can log the
/// address it got) until `stop` is cancelled.
pub fn spawn(
    listener: tokio::net::TcpListener,
    health: Health,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let router = router(health);
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    })
}

/// Serves `router` on `addr` until `shutdown` is cancelled, then lets in-flight requests
/// finish.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
