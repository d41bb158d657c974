//! `weir rollup` as a process: timely workers, each a member of the consumer group,
//! feeding a writer task that puts every flush into ClickHouse and the rollup topics and
//! only then acknowledges the partition watermarks the flush carried back to the worker's
//! source (which commits offsets up to what is acknowledged).
//!
//! A replay (`weir replay --into rollup`, [`crate::replay`]) runs the same dataflow and
//! writer over a bounded log, keeping only the windows wholly inside its range.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_contract::series_key::write_key_parts;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::{Role, RollupConfig, SinkSpec, TopicSpec};
use weir_runtime::dead_letter::DeadLetters;
use weir_runtime::kafka::consumer_config;
use weir_runtime::ops::Health;
use weir_runtime::produce::OutRecord;
use weir_runtime::replay::{Counters, EventRange};
use weir_runtime::role::{RoleOps, RoleSpec};
use weir_runtime::Topology;
use weir_window::kafka::{DecodeFn, KafkaLog};
use weir_window::{EventLog, Handoff, HashedKey, InputChecks, PoolConfig, PoolHandle, WorkerPool};

use crate::dataflow::{build, Emission, Emitter, Key, TierRow, Timing};
use crate::sink::clickhouse::{ClickHouseSink, ClickHouseTarget};
use crate::sink::topics::TopicSink;
use crate::sink::{by_tier, record_of};
use crate::tiers::Tiers;
use weir_contract::avro::RollupRecord;

/// One worker's flush on its way to the sinks.
pub(crate) struct Flush {
    worker: usize,
    emission: Emission,
}

/// What the rollup needs of the topology, checked.
pub(crate) struct Plan {
    pub cfg: RollupConfig,
    pub topic: String,
    pub clickhouse: ClickHouseTarget,
    pub tier_topics: Vec<(String, TopicSpec)>,
    pub late_spec: TopicSpec,
}

impl Plan {
    pub fn of(topology: &Topology) -> anyhow::Result<Self> {
        let cfg = topology.rollup.clone();
        let role = RoleSpec::resolve(topology, "rollup", &cfg.group, Role::Rollup)?;
        let clickhouse = match role.sink {
            Some(s @ SinkSpec::ClickHouse { .. }) => ClickHouseTarget::of(s)?,
            _ => anyhow::bail!(
                "consumer group {} needs a sink of type clickhouse",
                cfg.group
            ),
        };
        let topic = role.single_topic()?.to_string();
        role.declared("dead_letter_topic", &cfg.dead_letter_topic)?;
        let late_spec = role.declared("late_topic", &cfg.late_topic)?.clone();
        let tier_topics = cfg
            .tiers
            .iter()
            .map(|t| Ok((t.topic(), role.declared("tiers", &t.topic())?.clone())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            clickhouse,
            cfg,
            topic,
            tier_topics,
            late_spec,
        })
    }

    pub fn timing(&self) -> Timing {
        Timing {
            out_of_orderness: self.cfg.out_of_orderness,
            idle_timeout: self.cfg.idle_timeout,
            max_future: self.cfg.max_sample_future,
        }
    }
}

/// Which rows a run writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Every row, as windows become final; what is open at shutdown is not written.
    Live,
    /// Only windows wholly inside the range, including those the end of the log fired.
    Replay(EventRange),
}

/// The sinks a run writes to.
pub(crate) struct Sinks {
    pub clickhouse: Arc<ClickHouseSink>,
    /// The rollup topics and the late topic (a replay writes them only when asked).
    pub topics: Option<Arc<TopicSink>>,
    pub health: Health,
    /// A replay's counters (rows written).
    pub counters: Option<Arc<Counters>>,
}

pub async fn run(topology: Topology, shutdown: CancellationToken) -> anyhow::Result<()> {
    let plan = Plan::of(&topology)?;
    let cfg = &plan.cfg;
    let ops = RoleOps::serve(cfg.listen, "creating ClickHouse tables").await?;
    tracing::info!(addr = %ops.addr, group = %cfg.group, topic = %plan.topic, workers = cfg.workers, clickhouse = %weir_runtime::http::redact_url(&plan.clickhouse.url), "rollup listening");

    let clickhouse = Arc::new(ClickHouseSink::new(&plan.clickhouse, cfg.tiers.clone())?);
    if !wait_for_schema(&clickhouse, &ops.health, cfg.retry_max, &shutdown).await {
        ops.close().await;
        return Ok(());
    }
    let topics = Arc::new(TopicSink::new(
        &topology.kafka,
        &plan.tier_topics,
        (&cfg.late_topic, &plan.late_spec),
    )?);
    let dlq = Arc::new(DeadLetters::new(
        &topology.kafka,
        &cfg.dead_letter_topic,
        &cfg.group,
    )?);
    ops.health.set_ready();

    // Retention: drop old partitions now and then.
    let retention_task = {
        let ch = clickhouse.clone();
        let stop = shutdown.clone();
        let every = cfg.retention_interval;
        tokio::spawn(async move {
            loop {
                if let Err(e) = ch.enforce_retention().await {
                    tracing::warn!(error = format!("{e:#}"), "enforcing retention");
                }
                tokio::select! { _ = stop.cancelled() => break, _ = tokio::time::sleep(every) => {} }
            }
        })
    };

    let pool = WorkerPool::new(PoolConfig {
        workers: cfg.workers,
        max_pending: cfg.max_pending_rows,
        watermark_gauge: "weir_rollup_watermark_seconds",
        bounded: false,
    });
    let (tx, rx) = mpsc::unbounded_channel::<Flush>();
    let sinks = Sinks {
        clickhouse,
        topics: Some(topics),
        health: ops.health.clone(),
        counters: None,
    };
    let writer = tokio::spawn(write_loop(rx, pool.handle(), sinks, cfg.clone()));

    let mut client = consumer_config(&topology.kafka, &cfg.group);
    client.set("statistics.interval.ms", "5000");
    let decode = decode_samples(&topology, cfg);
    let (tiers, timing) = (Tiers::from_config(cfg), plan.timing());
    let (group, topic) = (cfg.group.clone(), plan.topic.clone());
    let rt = tokio::runtime::Handle::current();
    let running = pool.start(move |worker, handoff| {
        let decode = decode();
        let log = KafkaLog::for_worker(
            &client,
            &group,
            handoff.index,
            &topic,
            decode,
            dlq.clone(),
            rt.clone(),
            "weir_rollup_dead_letters_total",
        );
        let Some(log) = log else { return false };
        install(worker, handoff, log, &tiers, timing, Mode::Live, tx.clone());
        true
    })?;

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining and committing");
    let joined = running.stop().await;
    writer.abort();
    retention_task.abort();
    ops.close().await;
    joined
}

/// Creates the tables, retrying while ClickHouse is not there yet; `false` when shut
/// down meanwhile.
pub(crate) async fn wait_for_schema(
    clickhouse: &ClickHouseSink,
    health: &Health,
    retry_max: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(200), retry_max);
    loop {
        match clickhouse.ensure_schema().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "ClickHouse not ready; retrying");
                health.set_not_ready(format!("ClickHouse: {e:#}"));
            }
        }
        if !backoff.wait_unless(shutdown).await {
            return false;
        }
    }
}

/// A maker of per-worker decoders: each worker gets its own key buffer and input checks.
pub(crate) fn decode_samples(
    topology: &Topology,
    cfg: &RollupConfig,
) -> impl Fn() -> DecodeFn<Key, f64> + Send + Sync + 'static {
    let decoder = topology.decoder();
    let (max_future, check_partition) = (cfg.max_sample_future, cfg.check_partition);
    move || {
        let decoder = decoder.clone();
        let mut key_buf = String::new();
        let mut checks = InputChecks::new(max_future).check_partition(check_partition);
        Box::new(
            move |payload: &[u8], placement, out: &mut Vec<(Key, i64, f64)>| {
                let mut skipped = 0u64;
                checks.start(placement);
                decoder
                    .visit(payload, |s| {
                        key_buf.clear();
                        write_key_parts(&mut key_buf, s.name, s.labels.iter().copied());
                        let key = HashedKey::from(key_buf.as_str());
                        for x in checks.within_keyed(&s, Some(&key_buf)) {
                            // Stale markers and NaN/Inf have no place in sums and sketches.
                            if x.value.is_finite() {
                                out.push((key.clone(), x.timestamp_ms, x.value));
                            } else {
                                skipped += 1;
                            }
                        }
                    })
                    .map_err(|e| {
                        checks.reset();
                        e.to_string()
                    })?;
                metrics::counter!("weir_rollup_samples_total", "outcome" => "read")
                    .increment(out.len() as u64);
                if skipped > 0 {
                    metrics::counter!("weir_rollup_samples_total", "outcome" => "not_finite")
                        .increment(skipped);
                }
                Ok(checks.finish())
            },
        )
    }
}

/// Installs one worker's rollup dataflow over `log`, handing its flushes to the writer.
pub(crate) fn install<L: EventLog<Key, f64>>(
    worker: &mut timely::worker::Worker,
    handoff: Handoff,
    log: L,
    tiers: &Tiers,
    timing: Timing,
    mode: Mode,
    tx: mpsc::UnboundedSender<Flush>,
) {
    let index = handoff.index;
    let handles = handoff.link.handles.clone();
    let mut emitter = Emitter::new(tiers.allowed_lateness_ms);
    worker.dataflow::<weir_window::Time, _, _>(|scope| {
        build(
            scope,
            log,
            tiers,
            timing,
            handles,
            move |items, frontier| {
                let mut emission = emitter.absorb(items);
                match mode {
                    // The input never ends; MAX only comes when the dataflow is dropped at
                    // shutdown, with windows fired half full: not written.
                    Mode::Live if frontier == i64::MAX => return,
                    Mode::Live => {}
                    // The end of a bounded log fires every window: those inside the range
                    // have all their records read; those cut by its edges are left alone.
                    Mode::Replay(range) => {
                        emission
                            .rows
                            .retain(|r| range.covers(r.window.start, r.window.end));
                        metrics::counter!("weir_replay_samples_total", "outcome" => "late")
                            .increment(emission.late.len() as u64);
                        emission.late.clear();
                    }
                }
                if emission.is_empty() {
                    return;
                }
                handoff.handed_over(emission.rows.len());
                let _ = tx.send(Flush {
                    worker: index,
                    emission,
                });
            },
        );
    });
}

/// Takes flushes, batches what arrives within a moment, writes every tier to ClickHouse
/// and Kafka (retrying with backoff while a sink fails), then acknowledges what each
/// worker's flushes made final.
pub(crate) async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Flush>,
    pool: PoolHandle,
    sinks: Sinks,
    cfg: RollupConfig,
) {
    let tiers = cfg.tiers.len();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Windows fire together; a short pause gathers them into one insert per tier.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok(f) = rx.try_recv() {
            batch.push(f);
        }
        let mut rows: Vec<TierRow> = Vec::new();
        let mut late = Vec::new();
        let mut done = vec![0u64; pool.links.len()];
        let mut finals: Vec<(usize, Emission)> = Vec::new();
        for mut f in batch {
            metrics::counter!("weir_rollup_suppressed_rows_total")
                .increment(f.emission.suppressed as u64);
            rows.append(&mut f.emission.rows);
            late.append(&mut f.emission.late);
            done[f.worker] += 1;
            finals.push((f.worker, f.emission));
        }
        let n = rows.len();
        let per_tier = by_tier(rows, tiers);
        // Each row flattened once (quantiles read from its sketch once) for both sinks.
        let records: Vec<Vec<RollupRecord<'_>>> = per_tier
            .iter()
            .enumerate()
            .map(|(t, rows)| {
                rows.iter()
                    .map(|r| record_of(r, &cfg.tiers[t].name))
                    .collect()
            })
            .collect();
        let mut write = PendingWrite::new(sinks.topics.as_deref(), &records, &late);
        let mut backoff = Backoff::new(Duration::from_millis(100), cfg.retry_max);
        loop {
            let started = Instant::now();
            let r = write
                .advance(&sinks.clickhouse, sinks.topics.as_deref())
                .await;
            metrics::histogram!("weir_rollup_sink_seconds").record(started.elapsed().as_secs_f64());
            match r {
                Ok(()) => {
                    sinks.health.set_ready();
                    break;
                }
                Err(e) => {
                    metrics::counter!("weir_rollup_sink_errors_total").increment(1);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        rows = n,
                        "writing rollups failed; retrying what was not written"
                    );
                    sinks.health.set_not_ready(format!("sink: {e:#}"));
                    backoff.wait().await;
                }
            }
        }
        for (t, rows) in per_tier.iter().enumerate() {
            if !rows.is_empty() {
                metrics::counter!("weir_rollup_rows_total", "tier" => cfg.tiers[t].name.clone())
                    .increment(rows.len() as u64);
            }
        }
        if !late.is_empty() {
            metrics::counter!("weir_rollup_samples_total", "outcome" => "late")
                .increment(late.len() as u64);
        }
        if let Some(c) = &sinks.counters {
            Counters::add(&c.written, n as u64);
        }
        // Durable: what these flushes made final may now be committed past.
        for (w, e) in finals {
            e.acknowledge(&pool.links[w].handles.partition_acked);
        }
        for (w, batches) in done.into_iter().enumerate() {
            if batches > 0 {
                pool.written(w, batches, 0);
            }
        }
        pool.written(0, 0, n);
        metrics::gauge!("weir_rollup_pending_rows").set(pool.pending() as f64);
    }
}

/// What of one flush is still to be written, so a retry writes only that: the
/// ClickHouse tiers not yet inserted, and the topic records Kafka has not acknowledged.
/// (A ClickHouse insert that failed is sent again whole: its rows replace themselves.)
struct PendingWrite<'r> {
    rows: &'r [Vec<RollupRecord<'r>>],
    inserted: Vec<bool>,
    tier_records: Vec<Vec<OutRecord>>,
    late_records: Vec<OutRecord>,
}

impl<'r> PendingWrite<'r> {
    fn new(
        topics: Option<&TopicSink>,
        rows: &'r [Vec<RollupRecord<'r>>],
        late: &[weir_window::Event<Key, f64>],
    ) -> Self {
        Self {
            rows,
            inserted: vec![false; rows.len()],
            tier_records: match topics {
                Some(topics) => rows
                    .iter()
                    .enumerate()
                    .map(|(t, r)| topics.tier_records(t, r))
                    .collect(),
                None => vec![Vec::new(); rows.len()],
            },
            late_records: topics.map(|t| t.late_records(late)).unwrap_or_default(),
        }
    }

    async fn advance(
        &mut self,
        clickhouse: &ClickHouseSink,
        topics: Option<&TopicSink>,
    ) -> anyhow::Result<()> {
        for (t, rows) in self.rows.iter().enumerate() {
            if !self.inserted[t] {
                clickhouse.write(t, rows).await?;
                self.inserted[t] = true;
            }
            if let Some(topics) = topics {
                topics.send_tier(t, &mut self.tier_records[t]).await?;
            }
        }
        match topics {
            Some(topics) => topics.send_late(&mut self.late_records).await,
            None => Ok(()),
        }
    }
}
