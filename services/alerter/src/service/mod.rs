//! `weir alerter` as a process.
//!
//! ```text
//!  metrics.raw ──▶ stage one (timely workers, group `alerting-engine`)
//!                  per partition: recent samples, rules evaluated per step
//!                      │ one record per (partition, step, destination)
//!                      ▼
//!  alerts.partials ──▶ stage two (group `alerting-engine-merge`)
//!                  per destination: merge, alert state machine
//!                      ├──▶ alerts.triggered (Avro events)   ──▶ then alerts.state (compacted)
//!                      └──▶ notifier ──▶ Alertmanager (re-sent until resolved)
//! ```
//!
//! Stage one holds its timely capability at the watermark (the window engine's Kafka
//! source); a partition's step is evaluated once the partition's own watermark passed
//! it. Its records go to the repartition topic by rule and group key, so aggregations
//! across series work whichever partition and process read them. Stage two evaluates a
//! step once every metrics.raw partition came past it. Offsets of metrics.raw are
//! committed once the partials of every step that still read a record are durable;
//! offsets of the repartition topic once the state of every step before them is.
pub mod merge;
pub mod partials;
pub mod stage_one;
pub mod stage_two;
pub mod state;

/// bincode as the alerter's own topics use it, reading no more than the record holds: a
/// corrupt length prefix fails instead of asking for gigabytes.
pub fn decode_bounded<T: serde::de::DeserializeOwned>(b: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(b.len() as u64)
        .deserialize(b)
}

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::{AlerterConfig, Role, SinkSpec};
use weir_runtime::dead_letter::DeadLetters;
use weir_runtime::kafka::{client_config, consumer_config, partition_count, producer_config};
use weir_runtime::ops::Health;
use weir_runtime::role::{RoleOps, RoleSpec};
use weir_runtime::Topology;
use weir_window::kafka::KafkaLog;
use weir_window::{
    log_source, InputChecks, PoolConfig, PoolHandle, SinkExt, SourceConfig, WorkerPool,
};

use crate::alertmanager::AlertmanagerClient;
use crate::labels::Labels;
use crate::notify::{now_ms, Notifier};
use crate::ruleset::RuleSet;
use partials::{split, MAX_RECORD_BYTES};
use stage_one::{SampleDecoder, StageOne, StepOutput};
use stage_two::StageTwo;

/// One worker's evaluated steps on their way to the repartition topic.
struct Batch {
    worker: usize,
    steps: Vec<StepOutput>,
}

pub async fn run(topology: Topology, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg: AlerterConfig = topology.alerter.clone();
    if cfg.rule_files.is_empty() && cfg.tenant_rule_files.is_empty() {
        anyhow::bail!("alerter.rule_files and alerter.tenant_rule_files name no rule file");
    }
    let rules = Arc::new(
        RuleSet::of_config(&cfg).context("loading alerter.rule_files and tenant_rule_files")?,
    );
    let role = RoleSpec::resolve(&topology, "alerter", &cfg.group, Role::Alerter)?;
    let sink = match role.sink {
        Some(s @ SinkSpec::Alertmanager { .. }) => s.clone(),
        _ => anyhow::bail!(
            "consumer group {} needs a sink of type alertmanager",
            cfg.group
        ),
    };
    let topic = role.single_topic()?.to_string();
    let partials_spec = role
        .declared("partials_topic", &cfg.partials_topic)?
        .clone();
    let state_spec = role.declared("state_topic", &cfg.state_topic)?.clone();
    let events_spec = role.declared("events_topic", &cfg.events_topic)?.clone();
    role.declared("dead_letter_topic", &cfg.dead_letter_topic)?;
    let external_labels = Labels::new(
        cfg.external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );

    let ops = RoleOps::serve(cfg.listen, "reading topic metadata").await?;
    let health = ops.health.clone();
    tracing::info!(addr = %ops.addr, group = %cfg.group, merge_group = %cfg.merge_group, topic = %topic, rules = rules.len(), alertmanager = %weir_runtime::http::redact_url(sink.url()), "alerter listening");

    let partials: FutureProducer = producer_config(&topology.kafka, &partials_spec)
        .create()
        .context("creating the partials producer")?;
    let events: FutureProducer = producer_config(&topology.kafka, &events_spec)
        .create()
        .context("creating the events producer")?;
    let state: FutureProducer = producer_config(&topology.kafka, &state_spec)
        .create()
        .context("creating the state producer")?;
    // Partition counts, waiting for the broker and the topics if they are not there yet.
    let counts = {
        let mut backoff = Backoff::new(Duration::from_millis(200), cfg.retry_max);
        loop {
            let p = partials.clone();
            let names = [
                topic.clone(),
                cfg.partials_topic.clone(),
                cfg.state_topic.clone(),
                cfg.events_topic.clone(),
            ];
            let r = tokio::task::spawn_blocking(move || {
                names
                    .iter()
                    .map(|t| partition_count(p.client(), t, Duration::from_secs(10)))
                    .collect::<Result<Vec<u32>, _>>()
            })
            .await?;
            match r {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "reading topic metadata; retrying");
                    health.set_not_ready(e.to_string());
                }
            }
            if !backoff.wait_unless(&shutdown).await {
                ops.close().await;
                return Ok(());
            }
        }
    };
    let (sources, destinations, state_partitions, events_partitions) =
        (counts[0], counts[1], counts[2], counts[3]);
    let dlq = Arc::new(DeadLetters::new(
        &topology.kafka,
        &cfg.dead_letter_topic,
        &cfg.group,
    )?);

    // The notifier: Alertmanager on wall-clock time.
    let group_interval = Duration::from_millis(rules.max_interval_ms().max(0) as u64);
    let notifier = Arc::new(Mutex::new(Notifier::new(cfg.resend_delay, group_interval)));
    let am = AlertmanagerClient::of_sink(&sink, cfg.alertmanager_timeout)
        .context("creating the Alertmanager client")?;
    let notify_wake = Arc::new(tokio::sync::Notify::new());
    let notify_task = tokio::spawn(notify_loop(
        am,
        notifier.clone(),
        notify_wake.clone(),
        shutdown.clone(),
    ));

    // Stage two on a thread of its own (librdkafka's consumer calls block).
    let stop_merge = Arc::new(AtomicBool::new(false));
    let mut merge_consumer = consumer_config(&topology.kafka, &cfg.merge_group);
    merge_consumer.set("statistics.interval.ms", "5000");
    short_fetch_wait(&mut merge_consumer, &topology.kafka);
    let mut reader = client_config(&topology.kafka);
    reader
        .set("group.id", format!("{}-restore", cfg.merge_group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let stage_two = StageTwo {
        rules: rules.clone(),
        external_labels: external_labels.clone(),
        consumer_config: merge_consumer,
        reader_config: reader,
        group: cfg.merge_group.clone(),
        partials_topic: cfg.partials_topic.clone(),
        state_topic: cfg.state_topic.clone(),
        state_partitions,
        events_topic: cfg.events_topic.clone(),
        events_partitions,
        sources,
        destinations,
        events,
        state,
        notifier: notifier.clone(),
        notify_wake,
        generator_url: cfg.external_url.clone(),
        health: health.clone(),
        retry_max: cfg.retry_max,
        max_pending_steps: cfg.max_pending_steps,
        dlq: dlq.clone(),
    };
    let merge_thread = {
        let (rt, stop) = (tokio::runtime::Handle::current(), stop_merge.clone());
        std::thread::Builder::new()
            .name("alerter-merge".into())
            .spawn(move || stage_two.run(rt, stop))?
    };

    // Stage one: timely workers, each a member of the consumer group.
    let pool = WorkerPool::new(PoolConfig {
        workers: cfg.workers,
        // The repartition topic behind: stop reading until it catches up.
        max_pending: 10_000,
        watermark_gauge: "weir_alerter_watermark_seconds",
        bounded: false,
    });
    let (tx, rx) = mpsc::unbounded_channel::<Batch>();
    let writer = tokio::spawn(write_partials(
        rx,
        pool.handle(),
        partials,
        cfg.partials_topic.clone(),
        destinations,
        health.clone(),
        cfg.retry_max,
    ));
    let mut client = consumer_config(&topology.kafka, &cfg.group);
    client.set("statistics.interval.ms", "5000");
    short_fetch_wait(&mut client, &topology.kafka);
    let decoder = topology.decoder();
    let rt = tokio::runtime::Handle::current();
    // A sample is read by steps up to the longest lookback after it (and the step
    // after that, at the longest interval): until those are durable it is not committed.
    let horizon = rules.store().horizon_ms() + rules.max_interval_ms();
    let (topic, group) = (topic.clone(), cfg.group.clone());
    let (ooo, idle) = (cfg.out_of_orderness, cfg.idle_timeout);
    let (max_future, catch_up) = (cfg.max_sample_future, cfg.max_catch_up);
    let check_partition = cfg.check_partition;
    let rules1 = rules.clone();
    let running = pool.start(move |worker, handoff| {
        let index = handoff.index;
        let checks = InputChecks::new(max_future).check_partition(check_partition);
        let mut samples = SampleDecoder::new(decoder.clone(), &rules1, checks);
        let decode = Box::new(
            move |payload: &[u8], placement, out: &mut Vec<(Arc<Labels>, i64, f64)>| {
                let (unread, cut) = samples
                    .decode(payload, placement, out)
                    .map_err(|e| e.to_string())?;
                metrics::counter!("weir_alerter_samples_total", "outcome" => "read")
                    .increment((out.len() - unread) as u64);
                metrics::counter!("weir_alerter_samples_total", "outcome" => "unread")
                    .increment(unread as u64);
                Ok(cut)
            },
        );
        let Some(log) = KafkaLog::for_worker(
            &client,
            &group,
            index,
            &topic,
            decode,
            dlq.clone(),
            rt.clone(),
            "weir_alerter_dead_letters_total",
        ) else {
            return false;
        };
        let tx = tx.clone();
        let handles = handoff.link.handles.clone();
        let mut stage = StageOne::new(rules1.clone(), idle).with_max_catch_up(catch_up);
        let held = metrics::gauge!("weir_alerter_samples_held", "worker" => index.to_string());
        worker.dataflow::<weir_window::Time, _, _>(|scope| {
            let src = SourceConfig {
                out_of_orderness: ooo,
                idle_timeout: idle,
                max_future,
                release_at: Rc::new(move |ts| ts.saturating_add(horizon)),
            };
            log_source::<Arc<Labels>, f64, (), _>(scope, "MetricsRaw", log, src, handles)
                .sink_frontier("StageOne", move |items, frontier| {
                    let out = stage.absorb(items, frontier, Instant::now());
                    if out.late > 0 {
                        metrics::counter!("weir_alerter_samples_total", "outcome" => "late")
                            .increment(out.late);
                    }
                    if out.steps.is_empty() {
                        return;
                    }
                    held.set(stage.held().1 as f64);
                    handoff.handed_over(out.steps.len());
                    let _ = tx.send(Batch {
                        worker: index,
                        steps: out.steps,
                    });
                });
        });
        true
    })?;
    health.set_ready();

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining and committing");
    let joined = running.stop().await;
    writer.abort();
    // Stage two after stage one: what stage one wrote last is merged if it completes a
    // step; the rest is read again by the next owner.
    stop_merge.store(true, Ordering::Relaxed);
    let merged = tokio::task::spawn_blocking(move || merge_thread.join()).await;
    notify_task.abort();
    ops.close().await;
    match merged {
        Ok(Ok(r)) => r?,
        _ => anyhow::bail!("the merge stage panicked"),
    }
    joined
}

/// Writes each batch's steps to the repartition topic (retrying while it fails), then
/// acknowledges per metrics.raw partition the last step made durable.
#[allow(clippy::too_many_arguments)]
async fn write_partials(
    mut rx: mpsc::UnboundedReceiver<Batch>,
    pool: PoolHandle,
    producer: FutureProducer,
    topic: String,
    destinations: u32,
    health: Health,
    retry_max: Duration,
) {
    while let Some(batch) = rx.recv().await {
        let n = batch.steps.len();
        // What the batch makes durable, per partition, before its partials are moved.
        let done: Vec<(u32, i64)> = batch.steps.iter().map(|s| (s.part, s.step)).collect();
        let records: Vec<(String, i32, Vec<u8>)> = batch
            .steps
            .into_iter()
            .flat_map(|s| split(s.part, s.step, s.partials, destinations, MAX_RECORD_BYTES))
            .map(|(q, r)| (r.key(), q as i32, r.encode()))
            .collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), retry_max);
        loop {
            let started = Instant::now();
            let sends = records.iter().map(|(k, q, v)| {
                producer.send(
                    FutureRecord::to(&topic).key(k).partition(*q).payload(v),
                    Duration::from_secs(30),
                )
            });
            let failed = join_all(sends).await.into_iter().find_map(|r| r.err());
            metrics::histogram!("weir_alerter_sink_seconds", "sink" => "partials")
                .record(started.elapsed().as_secs_f64());
            match failed {
                None => break,
                Some((e, _)) => {
                    metrics::counter!("weir_alerter_errors_total", "kind" => "partials_write")
                        .increment(1);
                    tracing::warn!(error = %e, "writing partials failed; retrying");
                    health.set_not_ready(format!("writing partials: {e}"));
                    backoff.wait().await;
                }
            }
        }
        metrics::counter!("weir_alerter_steps_total", "stage" => "series").increment(n as u64);
        metrics::counter!("weir_alerter_partials_records_total", "stage" => "series")
            .increment(records.len() as u64);
        if let Ok(mut acked) = pool.links[batch.worker].handles.partition_acked.lock() {
            for (part, step) in done {
                let e = acked.entry(part).or_insert(step);
                *e = (*e).max(step);
            }
        }
        pool.written(batch.worker, 1, n);
    }
}

/// Alert latency over fetch efficiency: a broker may hold a fetch for its whole wait
/// even when records arrive meanwhile (tansu does), and librdkafka's default wait of
/// 500 ms, paid on metrics.raw and again on the partials topic, would be most of an
/// alert's latency. The topology's `kafka.consumer` can still set it.
fn short_fetch_wait(c: &mut rdkafka::ClientConfig, k: &weir_runtime::config::KafkaConfig) {
    if !k.consumer.contains_key("fetch.wait.max.ms") {
        c.set("fetch.wait.max.ms", "20");
    }
}

/// Sends what the notifier says is due: at once when stage two hands it a new firing or
/// resolved alert, and every second for re-sends and retries.
async fn notify_loop(
    am: AlertmanagerClient,
    notifier: Arc<Mutex<Notifier>>,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    loop {
        let now = now_ms();
        let due = notifier.lock().map(|mut n| n.due(now)).unwrap_or_default();
        if !due.is_empty() {
            let (fps, alerts): (Vec<u64>, Vec<_>) = due.into_iter().unzip();
            let started = Instant::now();
            let r = am.send(&alerts).await;
            metrics::histogram!("weir_alerter_sink_seconds", "sink" => "alertmanager")
                .record(started.elapsed().as_secs_f64());
            match r {
                Ok(()) => {
                    metrics::counter!("weir_alerter_notifications_total", "outcome" => "sent")
                        .increment(alerts.len() as u64);
                    if let Ok(mut n) = notifier.lock() {
                        n.sent(&fps, now);
                    }
                }
                Err(e) => {
                    metrics::counter!("weir_alerter_notifications_total", "outcome" => "failed")
                        .increment(alerts.len() as u64);
                    tracing::warn!(error = %e, "notifying Alertmanager; retrying");
                }
            }
        }
        if let Ok(n) = notifier.lock() {
            metrics::gauge!("weir_alerter_notifier_alerts").set(n.len() as f64);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
