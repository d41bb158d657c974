//! The gateway's HTTP server: plain or TLS, HTTP/1.1 and HTTP/2 on one port, at most
//! `max_connections` client connections open, and a drain on shutdown.
//!
//! Written on hyper-util rather than `axum::serve` because the latter cannot do what a
//! TLS edge needs: handshakes must run in each connection's own task (a slow or
//! hostile client must not hold up `accept`), the certificate must be taken fresh for
//! every new connection (it reloads), and a verified client certificate must reach the
//! handlers (it can name the tenant). Past `max_connections`, new connections wait in
//! the kernel's listen backlog until one closes: idle keep-alive connections cost memory
//! and file descriptors too, and tower's concurrency limits count requests, not sockets.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use weir_runtime::tls::ServerTls;

use crate::auth::{CertTenants, PeerIdentity};

/// How connections are served.
#[derive(Clone)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub tls: Option<ServerTls>,
    /// Maps a verified client certificate to a tenant (with TLS client auth).
    pub cert_tenants: Option<Arc<CertTenants>>,
    /// A TLS handshake, and a request's headers, must arrive within this.
    pub handshake_timeout: Duration,
    /// How long a shutdown waits for open connections to finish their requests.
    pub drain_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`; then stops accepting, closes idle
/// connections and lets in-flight requests finish (up to `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    o: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(o.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(o.handshake_timeout));
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: the next accept may work once a socket closes.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let slot = Slot::new(permit);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let router = router.clone();
        let tls = o.tls.clone();
        let cert_tenants = o.cert_tenants.clone();
        let handshake_timeout = o.handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let result = match tls {
                None => {
                    let svc = TowerToHyperService::new(router);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                    watcher.watch(conn).await
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                metrics::counter!("weir_gateway_tls_handshake_failures_total")
                                    .increment(1);
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                metrics::counter!("weir_gateway_tls_handshake_failures_total")
                                    .increment(1);
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let identity = match (&cert_tenants, stream.get_ref().1.peer_certificates()) {
                        (Some(map), Some([leaf, ..])) => Some(Arc::new(map.identify(leaf))),
                        _ => None,
                    };
                    let svc = router.map_request(move |mut req: Request<_>| {
                        if let Some(id) = &identity {
                            req.extensions_mut().insert(PeerIdentity::clone(id));
                        }
                        req
                    });
                    let svc = TowerToHyperService::new(svc);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(o.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?o.drain_timeout, "connections still open after the drain timeout; closing them");
    }
    Ok(())
}

/// A connection's place under `max_connections`, held until it closes.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!("weir_gateway_connections").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!("weir_gateway_connections").decrement(1.0);
    }
}
