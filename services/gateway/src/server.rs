//! Wiring of `weir gateway`: the Kafka producer, the shared ingest, the HTTP routes,
//! a metadata watcher for readiness and partition count, and a draining shutdown.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;
use weir_ingest::kafka::ProducerLimits;
use weir_ingest::validate::Validator;
use weir_ingest::{Ingest, IngestSettings};
use weir_runtime::ops::{self, Health};
use weir_runtime::shutdown::Shutdown;
use weir_runtime::Topology;

use crate::auth::{Auth, CertTenants};
use crate::body::BodyLimits;
use crate::http::ServeOptions;
use crate::protocols::{influx, json_push, otlp, remote_write};
use crate::tenants::TenantLimiter;

/// State every handler shares.
pub struct Gateway {
    pub ingest: Ingest,
    pub auth: Arc<Auth>,
    pub tenants: TenantLimiter,
    pub body_limits: BodyLimits,
    /// Line protocol: fields on one line.
    pub max_fields_per_line: usize,
    pub otlp: Arc<otlp::Translation>,
}

/// The ingest routes, one per protocol.
pub fn ingest_router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write::handler))
        .route("/write", post(influx::handler))
        .route("/api/v2/write", post(influx::handler))
        .route("/api/v1/push", post(json_push::handler))
        .route("/v1/metrics", post(otlp::handler))
        // Bodies are read with our own limits and messages (see `body`).
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
}

/// The ingest routes plus `/metrics`, `/healthz`, `/readyz` on one listener.
pub fn router(gw: Arc<Gateway>, health: Health) -> Router {
    ingest_router(gw).merge(ops::router(health))
}

/// Runs the gateway until `shutdown`; then stops accepting, lets in-flight requests
/// finish and flushes the producer. `bound` receives the listening address.
pub async fn run(
    topology: Topology,
    shutdown: Shutdown,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    let cfg = topology.gateway.clone();
    let topic_spec = topology
        .topic(&cfg.topic)
        .with_context(|| format!("gateway.topic {} is not declared", cfg.topic))?;
    let (producer, queue) = weir_ingest::kafka::producer(
        &topology.kafka,
        topic_spec,
        &ProducerLimits {
            max_inflight_bytes: cfg.limits.max_inflight_bytes.as_u64(),
            max_record_bytes: cfg.limits.max_record_bytes.as_u64(),
            record_bytes_setting: "gateway.limits.max_record_bytes",
        },
    )?;
    // Serve /healthz at once; /readyz and the ingest routes answer 503 until the metadata
    // watcher has reached Kafka and learned the partition count.
    let health = Health::new();
    health.set_not_ready("waiting for Kafka metadata");
    let tenants = TenantLimiter::new(cfg.tenants.clone(), cfg.limits.max_new_series_per_hour);
    let gw = Arc::new(Gateway {
        ingest: Ingest::new(
            producer.clone(),
            0,
            IngestSettings {
                topic: cfg.topic.clone(),
                validator: Validator::new(cfg.validation.clone()),
                tenant_label: cfg.auth.tenant_label.clone(),
                max_series: cfg.limits.max_series_per_request,
                max_record_bytes: cfg.limits.max_record_bytes.as_u64() as usize,
                max_expanded_bytes: cfg.limits.max_expanded_bytes.as_u64() as usize,
                delivery_timeout: cfg.delivery_timeout,
                max_inflight_bytes: cfg.limits.max_inflight_bytes.as_u64(),
                max_queued_records: queue,
                track_series: tenants.tracks_series(),
            },
            health.clone(),
        ),
        auth: Arc::new(Auth::from_config(&cfg.auth)?),
        tenants,
        body_limits: BodyLimits {
            max_body: cfg.limits.max_body_bytes.as_u64() as usize,
            max_decompressed: cfg.limits.max_decompressed_bytes.as_u64() as usize,
            read_timeout: cfg.limits.body_read_timeout,
        },
        max_fields_per_line: cfg.limits.max_fields_per_line,
        otlp: Arc::new(otlp::Translation::of_config(&cfg.otlp)),
    });

    let watcher = {
        let (gw, health, shutdown) = (gw.clone(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            weir_ingest::kafka::watch_metadata(&gw.ingest, &health, "gateway", shutdown).await
        })
    };
    let keys_watch = gw.auth.spawn_watch(shutdown.clone());
    let tls = match &cfg.tls {
        Some(t) => {
            let tls = weir_runtime::tls::ServerTls::load(t)
                .map_err(|e| anyhow::anyhow!("gateway.tls: {e}"))?;
            tls.spawn_watch(shutdown.clone());
            Some(tls)
        }
        None => None,
    };
    let cert_tenants = cfg
        .tls
        .as_ref()
        .and_then(|t| t.client_auth.as_ref())
        .map(|c| Arc::new(CertTenants::new(c.tenants.clone())));

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let ops = match cfg.ops_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on gateway.ops_listen {a}"))?;
            tracing::info!(addr = %l.local_addr()?, "ops endpoints listening");
            Some(ops::spawn(l, health.clone(), shutdown.clone()))
        }
        None => None,
    };
    tracing::info!(%addr, tls = tls.is_some(), client_auth = cert_tenants.is_some(), "gateway listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let routes = match cfg.ops_listen {
        Some(_) => ingest_router(gw.clone()),
        None => router(gw.clone(), health.clone()),
    };
    let options = ServeOptions {
        max_connections: cfg.limits.max_connections,
        tls,
        cert_tenants,
        handshake_timeout: cfg.limits.body_read_timeout,
        drain_timeout: cfg.delivery_timeout + Duration::from_secs(5),
    };
    // OTLP/gRPC on its own port, with the same TLS, auth and ingest.
    let grpc = match cfg.otlp.grpc_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on gateway.otlp.grpc_listen {a}"))?;
            tracing::info!(addr = %l.local_addr()?, "otlp grpc listening");
            let (routes, options, shutdown) = (
                otlp::grpc::router(gw.clone()),
                options.clone(),
                shutdown.clone(),
            );
            Some(tokio::spawn(async move {
                crate::http::serve(l, routes, options, shutdown).await
            }))
        }
        None => None,
    };
    crate::http::serve(listener, routes, options, shutdown.clone())
        .await
        .context("serving HTTP")?;
    if let Some(g) = grpc {
        g.await
            .context("the OTLP/gRPC server task")?
            .context("serving OTLP/gRPC")?;
    }
    if let Some(k) = keys_watch {
        k.abort();
    }
    if let Some(o) = ops {
        let _ = o.await;
    }

    // Every request has been answered; anything still queued belongs to none of them,
    // but flush anyway so nothing acknowledged-by-librdkafka is left behind.
    health.set_not_ready("shutting down");
    watcher.abort();
    weir_ingest::kafka::flush(&producer).await?;
    tracing::info!("gateway stopped; producer flushed");
    Ok(())
}
