//! Wiring of `weir scrape`: the configuration, the shared ingest path into `metrics.raw`,
//! shard membership, the manager, the ops routes with `/api/v1/targets`, SIGHUP reloads
//! and a shutdown that finishes the scrapes being written and flushes the producer.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use weir_ingest::kafka::ProducerLimits;
use weir_ingest::validate::Validator;
use weir_ingest::{Ingest, IngestSettings};
use weir_runtime::config::ScrapeRoleConfig;
use weir_runtime::ops::{self, Health};
use weir_runtime::shutdown::Shutdown;
use weir_runtime::Topology;

use crate::config::ScrapeConfig;
use crate::manager::{targets_json, Manager, View};
use crate::scrape_loop::Shared;
use crate::shard::{join_group, Ownership};

/// Where this replica's configuration comes from, and the command line's sharding.
pub struct Options {
    /// vmagent-style static sharding from the command line, overriding the topology.
    pub members_count: Option<u32>,
    pub member_num: Option<u32>,
    pub replication_factor: Option<u32>,
}

/// Where the Prometheus configuration is read from, again at each SIGHUP.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    Inline(serde_yaml::Value),
}

impl Source {
    fn of(cfg: &ScrapeRoleConfig) -> anyhow::Result<Self> {
        match (&cfg.config_file, &cfg.prometheus) {
            (Some(f), _) => Ok(Self::File(f.clone())),
            (None, Some(v)) => Ok(Self::Inline(v.clone())),
            (None, None) => anyhow::bail!(
                "scrape: no scrape configuration: set scrape.config_file (a prometheus.yml) or scrape.prometheus"
            ),
        }
    }

    fn load(&self) -> anyhow::Result<ScrapeConfig> {
        Ok(match self {
            Self::File(p) => ScrapeConfig::load(p)?,
            Self::Inline(v) => ScrapeConfig::from_value(v, std::path::Path::new("."))
                .map_err(|e| anyhow::anyhow!("scrape.prometheus: {e}"))?,
        })
    }
}

/// Loads and checks the scrape configuration of a topology (for `weir check`).
pub fn check(topology: &Topology) -> anyhow::Result<ScrapeConfig> {
    Source::of(&topology.scrape)?.load()
}

fn ownership_of(cfg: &ScrapeRoleConfig, o: &Options) -> anyhow::Result<Option<Ownership>> {
    let s = &cfg.sharding;
    let members = o.members_count.unwrap_or(s.members_count);
    let member = o.member_num.unwrap_or(s.member_num);
    let replicas = o.replication_factor.unwrap_or(s.replication_factor);
    if member >= members || replicas == 0 || replicas > members {
        anyhow::bail!(
            "sharding: member_num {member} must be below members_count {members}, and replication_factor {replicas} from 1 to members_count"
        );
    }
    if members > 1 {
        return Ok(Some(Ownership::Static {
            members,
            member,
            replicas,
        }));
    }
    Ok(if s.group.is_some() {
        None
    } else {
        Some(Ownership::All)
    })
}

/// Runs `weir scrape` until `shutdown`. `bound` receives the ops address.
pub async fn run(
    topology: Topology,
    options: Options,
    shutdown: Shutdown,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    let cfg = topology.scrape.clone();
    let source = Source::of(&cfg)?;
    let config = source.load()?;
    let topic = topology
        .topic(&cfg.topic)
        .with_context(|| format!("scrape.topic {} is not declared", cfg.topic))?;
    let (producer, queue) = weir_ingest::kafka::producer(
        &topology.kafka,
        topic,
        &ProducerLimits {
            max_inflight_bytes: cfg.limits.max_inflight_bytes.as_u64(),
            max_record_bytes: cfg.limits.max_record_bytes.as_u64(),
            record_bytes_setting: "scrape.limits.max_record_bytes",
        },
    )?;
    let kafka_health = Health::new();
    kafka_health.set_not_ready("waiting for Kafka metadata");
    let max_body = cfg.limits.max_body_bytes.as_u64();
    let shared = Arc::new(Shared {
        ingest: Ingest::new(
            producer.clone(),
            0,
            IngestSettings {
                topic: cfg.topic.clone(),
                validator: Validator::new(cfg.validation.clone()),
                tenant_label: cfg.tenant_label.clone(),
                // A scrape is bounded by its body; sample_limit is the per-job bound.
                max_series: usize::MAX,
                max_record_bytes: cfg.limits.max_record_bytes.as_u64() as usize,
                // Records of a body are ~1.5x its text; staleness markers can double it.
                max_expanded_bytes: (max_body as usize).saturating_mul(4),
                delivery_timeout: cfg.delivery_timeout,
                max_inflight_bytes: cfg.limits.max_inflight_bytes.as_u64(),
                max_queued_records: queue,
                track_series: false,
            },
            kafka_health.clone(),
        ),
        tenant: cfg.tenant.clone(),
        external_labels: config
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        max_body_bytes: max_body,
        slots: Semaphore::new(cfg.limits.max_concurrent_scrapes),
    });
    let watcher = {
        let (shared, health, shutdown) = (shared.clone(), kafka_health.clone(), shutdown.clone());
        tokio::spawn(async move {
            weir_ingest::kafka::watch_metadata(&shared.ingest, &health, "scrape", shutdown).await
        })
    };

    let (own_tx, own_rx) = watch::channel(Ownership::Waiting);
    let stop_membership = tokio_util::sync::CancellationToken::new();
    let membership = match ownership_of(&cfg, &options)? {
        Some(o) => {
            own_tx.send_replace(o);
            None
        }
        None => {
            let group = cfg.sharding.group.clone().unwrap_or_default();
            topology.topic(&cfg.sharding.topic).with_context(|| {
                format!(
                    "scrape.sharding.topic {} is not declared under topics",
                    cfg.sharding.topic
                )
            })?;
            Some(join_group(
                &topology.kafka,
                &group,
                &cfg.sharding.topic,
                cfg.sharding.session_timeout,
                own_tx,
                stop_membership.clone(),
            )?)
        }
    };

    let mut manager = Manager::new(shared.clone(), own_rx.clone());
    manager.apply(&config)?;
    tracing::info!(jobs = config.jobs.len(), "scrape configuration loaded");

    // Ready when Kafka answers and this replica knows its shards.
    let health = Health::new();
    health.set_not_ready("starting");
    let readiness = {
        let (health, kafka, own, stop) = (
            health.clone(),
            kafka_health.clone(),
            own_rx.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                if !kafka.is_ready() {
                    health.set_not_ready("Kafka is not reachable");
                } else if own.borrow().is_waiting() {
                    health.set_not_ready("waiting for a shard assignment from the scrape group");
                } else {
                    health.set_ready();
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        })
    };

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on scrape.listen {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "scrape ops and /api/v1/targets listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let routes = api_router(manager.view.clone()).merge(ops::router(health.clone()));
    let stop_ops = tokio_util::sync::CancellationToken::new();
    let ops_task = {
        let stop = stop_ops.clone();
        tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    let (reload_tx, reload_rx) = mpsc::channel(1);
    let hup = spawn_sighup(reload_tx, shutdown.clone());
    let load = move || source.load();
    manager.run(shutdown.clone(), reload_rx, load).await;

    health.set_not_ready("shutting down");
    hup.abort();
    readiness.abort();
    watcher.abort();
    stop_membership.cancel();
    if let Some(m) = membership {
        let _ = tokio::task::spawn_blocking(move || m.join()).await;
    }
    weir_ingest::kafka::flush(&producer).await?;
    stop_ops.cancel();
    let _ = ops_task.await;
    tracing::info!("scrape stopped; producer flushed");
    Ok(())
}

#[derive(serde::Deserialize)]
struct TargetsQuery {
    state: Option<String>,
}

fn api_router(view: Arc<std::sync::RwLock<View>>) -> Router {
    async fn targets(
        State(view): State<Arc<std::sync::RwLock<View>>>,
        Query(q): Query<TargetsQuery>,
    ) -> axum::Json<serde_json::Value> {
        let v = view.read().unwrap_or_else(|p| p.into_inner());
        axum::Json(targets_json(&v, q.state.as_deref()))
    }
    Router::new()
        .route("/api/v1/targets", get(targets))
        .route("/targets", get(targets))
        .with_state(view)
}

fn spawn_sighup(tx: mpsc::Sender<()>, stop: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads need a restart");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = hup.recv() => {
                        if r.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reloading the scrape configuration");
                        let _ = tx.try_send(());
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (tx, stop);
        }
    })
}
