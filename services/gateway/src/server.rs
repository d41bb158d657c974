//! Wiring of `weir gateway`: the Kafka producer, the shared ingest, the HTTP routes,
//! a metadata watcher for readiness and partition count, and a draining shutdown.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::oneshot;
use weir_runtime::kafka::{partition_count, producer_config};
use weir_runtime::ops::{self, Health};
use weir_runtime::shutdown::Shutdown;
use weir_runtime::Topology;

use crate::auth::{Auth, CertTenants};
use crate::body::BodyLimits;
use crate::http::ServeOptions;
use crate::ingest::{Ingest, IngestSettings};
use crate::protocols::{influx, json_push, otlp, remote_write};
use crate::tenants::TenantLimiter;
use crate::validate::Validator;

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
    let mut producer_cfg = producer_config(&topology.kafka, topic_spec);
    let queue = fit_producer_to_limits(&mut producer_cfg, &cfg.limits)?;
    let producer: FutureProducer = producer_cfg
        .create()
        .context("creating the Kafka producer")?;
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

    let watcher = tokio::spawn(watch_metadata(gw.clone(), health.clone(), shutdown.clone()));
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
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(30)))
        .await
        .context("flush task")?
        .context("flushing the Kafka producer")?;
    tracing::info!("gateway stopped; producer flushed");
    Ok(())
}

/// Makes the producer's queue hold whatever the gateway admits, and checks that the
/// largest record it builds is one Kafka client accepts: admission (the in-flight
/// budget) is then what refuses load, before a request is read, and a full queue or an
/// oversized record can no longer fail a request half-way. Returns the queue's record
/// limit, which requests are checked against whole before any record is enqueued.
fn fit_producer_to_limits(
    c: &mut rdkafka::ClientConfig,
    l: &weir_runtime::config::GatewayLimits,
) -> anyhow::Result<usize> {
    let num = |c: &rdkafka::ClientConfig, key: &str| -> anyhow::Result<u64> {
        c.get(key)
            .unwrap_or("0")
            .parse::<u64>()
            .with_context(|| format!("kafka.producer.{key} is not a number"))
    };
    let budget_kib = l.max_inflight_bytes.as_u64().div_ceil(1024) + 1024;
    if num(c, "queue.buffering.max.kbytes")? < budget_kib {
        c.set("queue.buffering.max.kbytes", budget_kib.to_string());
    }
    let max_message = num(c, "message.max.bytes")?;
    if l.max_record_bytes.as_u64() + 1024 > max_message {
        anyhow::bail!(
            "gateway.limits.max_record_bytes ({}) must be at least 1KiB below the producer's message.max.bytes ({max_message}): records that large would be refused by Kafka",
            l.max_record_bytes
        );
    }
    Ok(num(c, "queue.buffering.max.messages")?.max(1) as usize)
}

/// Keeps readiness and the partition count current: every second until Kafka first
/// answers, then every 5 s.
async fn watch_metadata(gw: Arc<Gateway>, health: Health, shutdown: Shutdown) {
    let mut first = true;
    loop {
        if !first {
            let every = if gw.ingest.partitions() == 0 { 1 } else { 5 };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(every)) => {}
            }
        }
        first = false;
        let p = gw.ingest.producer().clone();
        let topic = gw.ingest.topic().to_string();
        let r = tokio::task::spawn_blocking(move || {
            partition_count(p.client(), &topic, Duration::from_secs(5))
        })
        .await;
        match r {
            Ok(Ok(n)) => {
                gw.ingest.set_partitions(n);
                metrics::gauge!("weir_gateway_partitions").set(n as f64);
                metrics::gauge!("weir_gateway_kafka_up").set(1.0);
                if !health.is_ready() {
                    tracing::info!(topic = %gw.ingest.topic(), partitions = n, "connected to Kafka");
                }
                health.set_ready();
            }
            Ok(Err(e)) => {
                metrics::gauge!("weir_gateway_kafka_up").set(0.0);
                if health.is_ready() || gw.ingest.partitions() == 0 {
                    tracing::warn!(error = %e, "Kafka unreachable; answering 503 until it is back");
                }
                health.set_not_ready(e.to_string());
            }
            Err(e) => tracing::error!(error = %e, "metadata task failed"),
        }
    }
}
