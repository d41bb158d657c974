//! `weir rollup` as a process: timely workers, each a member of the consumer group,
//! feeding a writer task that puts every flush into ClickHouse and the rollup topics and
//! only then acknowledges the partition watermarks the flush carried back to the worker's
//! source (which commits offsets up to what is acknowledged).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_contract::series_key::write_key_parts;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::{Role, RollupConfig, SinkSpec};
use weir_runtime::dead_letter::DeadLetters;
use weir_runtime::kafka::consumer_config;
use weir_runtime::ops::{self, Health};
use weir_runtime::produce::OutRecord;
use weir_runtime::Topology;
use weir_window::kafka::KafkaLog;
use weir_window::{run_then_drain, HashedKey, InputChecks, PeerWatermarks, WorkerLink};

use crate::dataflow::{build, Emission, Emitter, Key, TierRow, Timing};
use crate::sink::clickhouse::ClickHouseSink;
use crate::sink::topics::TopicSink;
use crate::sink::{by_tier, record_of};
use crate::tiers::Tiers;
use weir_contract::avro::RollupRecord;

/// One worker's flush on its way to the sinks.
struct Flush {
    worker: usize,
    emission: Emission,
}

pub async fn run(topology: Topology, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: RollupConfig = topology.rollup.clone();
    let (group_spec, sink_spec) = topology
        .group_of_role(&cfg.group, Role::Rollup)
        .map_err(|e| anyhow::anyhow!("rollup.group: {e}"))?;
    let Some(SinkSpec::ClickHouse { url, database }) = sink_spec else {
        anyhow::bail!(
            "consumer group {} needs a sink of type clickhouse",
            cfg.group
        );
    };
    let [topic] = group_spec.topics.as_slice() else {
        anyhow::bail!("consumer group {} must read exactly one topic", cfg.group);
    };
    let declared = |what: &str, t: &str| {
        topology.topic(t).cloned().ok_or_else(|| {
            anyhow::anyhow!("rollup.{what}: topic {t:?} is not declared under topics")
        })
    };
    declared("dead_letter_topic", &cfg.dead_letter_topic)?;
    let late_spec = declared("late_topic", &cfg.late_topic)?;
    let tier_topics = cfg
        .tiers
        .iter()
        .map(|t| Ok((t.topic(), declared("tiers", &t.topic())?)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let health = Health::new();
    health.set_not_ready("creating ClickHouse tables");
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %listener.local_addr()?, group = %cfg.group, topic = %topic, workers = cfg.workers, clickhouse = %url, "rollup listening");
    let ops_stop = CancellationToken::new();
    let ops_task = ops::spawn(listener, health.clone(), ops_stop.clone());

    let clickhouse = Arc::new(ClickHouseSink::new(url, database, cfg.tiers.clone()));
    // ClickHouse may come up after us: retry until the tables exist.
    let mut backoff = Backoff::new(Duration::from_millis(200), cfg.retry_max);
    loop {
        match clickhouse.ensure_schema().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "ClickHouse not ready; retrying");
                health.set_not_ready(format!("ClickHouse: {e:#}"));
            }
        }
        if !backoff.wait_unless(&shutdown).await {
            ops_stop.cancel();
            let _ = ops_task.await;
            return Ok(());
        }
    }
    let topics = Arc::new(TopicSink::new(
        &topology.kafka,
        &tier_topics,
        (&cfg.late_topic, &late_spec),
    )?);
    let dlq = Arc::new(DeadLetters::new(
        &topology.kafka,
        &cfg.dead_letter_topic,
        &cfg.group,
    )?);
    health.set_ready();

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

    let peers = PeerWatermarks::new(cfg.workers);
    let links: Vec<WorkerLink> = (0..cfg.workers)
        .map(|_| WorkerLink::new(peers.clone()))
        .collect();
    let pending_rows = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel::<Flush>();
    let stop_reading = Arc::new(AtomicBool::new(false));

    let writer = tokio::spawn(write_loop(
        rx,
        links.clone(),
        clickhouse.clone(),
        topics.clone(),
        health.clone(),
        pending_rows.clone(),
        cfg.clone(),
    ));

    // The timely workers run on threads of their own.
    let tiers = Tiers::from_config(&cfg);
    let timing = Timing {
        out_of_orderness: cfg.out_of_orderness,
        idle_timeout: cfg.idle_timeout,
        max_future: cfg.max_sample_future,
    };
    let mut client = consumer_config(&topology.kafka, &cfg.group);
    client.set("statistics.interval.ms", "5000");
    let decoder = topology.decoder();
    let rt = tokio::runtime::Handle::current();
    let workers = {
        let (links, stop_reading, pending_rows, topic, group) = (
            links.clone(),
            stop_reading.clone(),
            pending_rows.clone(),
            topic.clone(),
            cfg.group.clone(),
        );
        let max_pending = cfg.max_pending_rows;
        let max_future = cfg.max_sample_future;
        let check_partition = cfg.check_partition;
        std::thread::Builder::new().name("timely".into()).spawn(move || {
            timely::execute(timely::Config::process(links.len()), move |worker| {
                let index = worker.index();
                let link = links[index].clone();
                let decoder = decoder.clone();
                let mut key_buf = String::new();
                let mut checks = InputChecks::new(max_future).check_partition(check_partition);
                let decode = Box::new(move |payload: &[u8], placement, out: &mut Vec<(Key, i64, f64)>| {
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
                    metrics::counter!("weir_rollup_samples_total", "outcome" => "read").increment(out.len() as u64);
                    if skipped > 0 {
                        metrics::counter!("weir_rollup_samples_total", "outcome" => "not_finite").increment(skipped);
                    }
                    Ok(checks.finish())
                });
                let Some(log) = KafkaLog::for_worker(&client, &group, index, &topic, decode, dlq.clone(), rt.clone(), "weir_rollup_dead_letters_total") else {
                    return;
                };
                let tx = tx.clone();
                let handoff = link.clone();
                let pending = pending_rows.clone();
                let mut emitter = Emitter::new(tiers.allowed_lateness_ms);
                worker.dataflow::<weir_window::Time, _, _>(|scope| {
                    build(scope, log, &tiers, timing, link.handles.clone(), move |items, frontier| {
                        let emission = emitter.absorb(items);
                        // The input never ends; MAX only comes when the dataflow is
                        // dropped at shutdown, with windows fired half full: not written.
                        if frontier == i64::MAX {
                            return;
                        }
                        if emission.is_empty() {
                            return;
                        }
                        pending.fetch_add(emission.rows.len(), Ordering::Relaxed);
                        handoff.handed_over();
                        let _ = tx.send(Flush { worker: index, emission });
                    });
                });
                let wm_gauge = metrics::gauge!("weir_rollup_watermark_seconds", "worker" => index.to_string());
                run_then_drain(worker, &link, &stop_reading, || pending_rows.load(Ordering::Relaxed) > max_pending, wm_gauge);
            })
            .map(|guards| drop(guards.join()))
            .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))
        })?
    };

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining and committing");
    stop_reading.store(true, Ordering::Relaxed);
    let joined = tokio::task::spawn_blocking(move || workers.join()).await;
    writer.abort();
    retention_task.abort();
    ops_stop.cancel();
    let _ = ops_task.await;
    match joined {
        Ok(Ok(r)) => r,
        _ => Err(anyhow::anyhow!("a timely worker panicked")),
    }
}

/// Takes flushes, batches what arrives within a moment, writes every tier to ClickHouse
/// and Kafka (retrying with backoff while a sink fails), then acknowledges what each
/// worker's flushes made final.
async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Flush>,
    links: Vec<WorkerLink>,
    clickhouse: Arc<ClickHouseSink>,
    topics: Arc<TopicSink>,
    health: Health,
    pending_rows: Arc<AtomicUsize>,
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
        let mut done = vec![0u64; links.len()];
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
        let mut write = PendingWrite::new(&topics, &records, &late);
        let mut backoff = Backoff::new(Duration::from_millis(100), cfg.retry_max);
        loop {
            let started = Instant::now();
            let r = write.advance(&clickhouse, &topics).await;
            metrics::histogram!("weir_rollup_sink_seconds").record(started.elapsed().as_secs_f64());
            match r {
                Ok(()) => {
                    health.set_ready();
                    break;
                }
                Err(e) => {
                    metrics::counter!("weir_rollup_sink_errors_total").increment(1);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        rows = n,
                        "writing rollups failed; retrying what was not written"
                    );
                    health.set_not_ready(format!("sink: {e:#}"));
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
        pending_rows.fetch_sub(
            n.min(pending_rows.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        metrics::gauge!("weir_rollup_pending_rows")
            .set(pending_rows.load(Ordering::Relaxed) as f64);
        // Durable: what these flushes made final may now be committed past.
        for (w, e) in finals {
            e.acknowledge(&links[w].handles.partition_acked);
        }
        for (link, n) in links.iter().zip(done) {
            link.written(n);
        }
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
        topics: &TopicSink,
        rows: &'r [Vec<RollupRecord<'r>>],
        late: &[weir_window::Event<Key, f64>],
    ) -> Self {
        Self {
            rows,
            inserted: vec![false; rows.len()],
            tier_records: rows
                .iter()
                .enumerate()
                .map(|(t, r)| topics.tier_records(t, r))
                .collect(),
            late_records: topics.late_records(late),
        }
    }

    async fn advance(
        &mut self,
        clickhouse: &ClickHouseSink,
        topics: &TopicSink,
    ) -> anyhow::Result<()> {
        for (t, rows) in self.rows.iter().enumerate() {
            if !self.inserted[t] {
                clickhouse.write(t, rows).await?;
                self.inserted[t] = true;
            }
            topics.send_tier(t, &mut self.tier_records[t]).await?;
        }
        topics.send_late(&mut self.late_records).await
    }
}
