//! Per-partition lanes from `metrics.raw` to the remote-write sink.
//!
//! One event loop owns the lanes: it reads records, decodes them (undecodable ones go to
//! the dead-letter topic), appends their series to the lane of their partition, and
//! dispatches a lane's batch when it is big or old enough — at most one request per
//! partition in flight, so a series' samples reach the receiver in order. A delivery
//! task retries with exponential backoff and jitter while the sink fails; meanwhile the
//! lane keeps buffering until `max_buffered_samples` (or `max_buffered_bytes`), then the
//! partition is paused. When
//! the receiver refuses a batch as unwritable (4xx), the batch is split in halves until
//! the refused series are alone; those go to the dead-letter topic, the rest is written.
//! Only then is the offset after the batch stored for commit. With tenancy on, each
//! series is tagged with its tenant's route as it is read, and a batch goes out as one
//! request per tenant (see [`crate::tenancy`]).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use weir_contract::avro::{BatchEncoder, Decoder};
use weir_contract::remote_write::push_timeseries;
use weir_contract::MetricsBatch;
use weir_runtime::backoff::Backoff;
use weir_runtime::config::{Role, TsdbWriterConfig};
use weir_runtime::consumer::{store_next_offset, Assignment, Draining, GroupContext, PartitionId};
use weir_runtime::dead_letter::{DeadLetter, DeadLetters};
use weir_runtime::input_checks::{InputChecks, Placement};
use weir_runtime::kafka::consumer_config;
use weir_runtime::kafka::partition_count;
use weir_runtime::ops::Health;
use weir_runtime::role::{RoleOps, RoleSpec};
use weir_runtime::Topology;

use crate::sink::{series_of, RemoteWriteSink, SendError};
use crate::tenancy::{Route, Router, Unrouted};

type Consumer_ = StreamConsumer<GroupContext<Draining>>;

/// Runs the writer until `shutdown`; then stops reading, lets in-flight batches finish
/// (up to the drain timeout), commits and returns.
pub async fn run(topology: Topology, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cfg = topology.tsdb_writer.clone();
    let role = RoleSpec::resolve(&topology, "tsdb_writer", &cfg.group, Role::TsdbWriter)?;
    let sink_spec = role
        .sink
        .with_context(|| format!("consumer group {} names no sink", cfg.group))?;
    role.declared("dead_letter_topic", &cfg.dead_letter_topic)?;
    let sink = RemoteWriteSink::new(sink_spec, cfg.request_timeout)?;
    let router = Router::new(&topology, sink, cfg.request_timeout)?;
    let assignment = Arc::new(Assignment::default());
    let context = GroupContext {
        group: cfg.group.clone(),
        rebalancing: Draining {
            assignment: assignment.clone(),
            drain_timeout: Duration::from_secs(30),
        },
    };
    let consumer: Arc<Consumer_> = Arc::new(
        consumer_config(&topology.kafka, &cfg.group)
            .set("statistics.interval.ms", "5000")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .create_with_context(context)
            .context("creating the Kafka consumer")?,
    );
    let topics: Vec<&str> = role.group_spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).context("subscribing")?;
    let dlq = DeadLetters::new(&topology.kafka, &cfg.dead_letter_topic, &cfg.group)?;

    let ops = RoleOps::serve(cfg.listen, "starting").await?;
    ops.health.set_ready();
    tracing::info!(addr = %ops.addr, group = %cfg.group, topics = ?topics, sink = router.shown_url(), tenancy = router.enabled(), "tsdb-writer listening");
    // Gauges that change only on events start at 0, so a dashboard shows 0, not "no data".
    metrics::gauge!("weir_tsdb_writer_paused_partitions").set(0.0);
    metrics::gauge!("weir_tsdb_writer_in_flight_requests").set(0.0);

    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        consumer: consumer.clone(),
        dlq,
        cfg: cfg.clone(),
        assignment,
        health: ops.health.clone(),
        hard_stop: CancellationToken::new(),
    });
    let mut writer = Writer {
        shared: shared.clone(),
        decoder: topology.decoder(),
        checks: InputChecks::new(cfg.max_sample_future).check_partition(cfg.check_partition),
        router,
        unrouted: Unrouted::default(),
        partitions: HashMap::new(),
        lanes: HashMap::new(),
        permits: Arc::new(Semaphore::new(cfg.max_in_flight)),
        done_tx,
        done_rx,
        in_flight: 0,
        generations: 0,
    };
    let result = writer.run(&shutdown).await;
    ops.close().await;
    result
}

struct Shared {
    consumer: Arc<Consumer_>,
    dlq: DeadLetters,
    cfg: TsdbWriterConfig,
    assignment: Arc<Assignment>,
    health: Health,
    /// Cancelled when draining on shutdown took too long: retries give up (the records
    /// stay uncommitted and are read again).
    hard_stop: CancellationToken,
}

/// One buffered series: its bytes in the lane's body and the record it came from.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    offset: i64,
    /// The tenant route of the series (always 0 with tenancy off).
    route: u32,
    /// Its samples (per-tenant counts; fits beside `route` at no cost).
    samples: u32,
}

/// The part of a batch that goes to one route, as one request (or more, when the
/// receiver refuses some of it).
struct Part {
    route: Arc<Route>,
    body: Vec<u8>,
    spans: Vec<Span>,
}

/// A partition's buffer. Series are transcoded from Avro straight into remote-write
/// protobuf as they are read: a `WriteRequest` body is its `timeseries` entries one
/// after another, so a batch is built by appending and split by byte ranges.
#[derive(Default)]
struct Lane {
    body: Vec<u8>,
    spans: Vec<Span>,
    samples: usize,
    oldest: Option<Instant>,
    /// Offset of the last record read into this lane (buffered, dead-lettered or empty).
    last_offset: Option<i64>,
    /// Next offset already stored for commit.
    stored_next: i64,
    in_flight: bool,
    paused: bool,
    /// Tells this lane's deliveries from those of a lane it replaced after a revocation.
    generation: u64,
}

struct Done {
    partition: PartitionId,
    generation: u64,
    /// The next offset the delivery stored, when it succeeded.
    stored: Option<i64>,
}

struct Writer {
    shared: Arc<Shared>,
    decoder: Decoder,
    checks: InputChecks,
    router: Router,
    unrouted: Unrouted,
    /// Each topic's partition count, for the partition check; read again after a
    /// rebalance, since partitions may have been added.
    partitions: HashMap<String, Option<u32>>,
    lanes: HashMap<PartitionId, Lane>,
    permits: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    in_flight: usize,
    generations: u64,
}

impl Writer {
    async fn run(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        // Its own handle, so a borrowed message does not borrow `self`.
        let consumer = self.shared.consumer.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Timers before the consumer: with records always waiting, a later arm
                // of a biased select would never run.
                biased;
                _ = shutdown.cancelled() => break,
                Some(d) = self.done_rx.recv() => self.on_done(d),
                _ = tick.tick() => self.flush_due(false),
                m = consumer.recv() => match m {
                    Ok(m) => self.on_message(&m).await?,
                    Err(e) => {
                        tracing::warn!(error = %e, "Kafka consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
            for p in self.shared.assignment.take_revoked() {
                // The next owner reads these again from the committed offset.
                self.lanes.remove(&p);
                self.partitions.clear();
            }
        }
        self.drain().await
    }

    async fn on_message(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let p: PartitionId = (m.topic().to_string(), m.partition());
        let offset = m.offset();
        let payload = m.payload().unwrap_or_default();
        let cfg = &self.shared.cfg;
        let (max_buffered, max_batch) = (cfg.max_buffered_samples, cfg.max_batch_samples);
        let (max_buffered_bytes, max_batch_bytes) = (
            cfg.max_buffered_bytes.as_u64() as usize,
            cfg.max_batch_bytes.as_u64() as usize,
        );
        let placement = self.placement(m.topic(), m.partition()).await;
        let lane = lane_of(&mut self.lanes, &mut self.generations, &p);
        lane.last_offset = Some(offset);
        let (body_len, spans_len) = (lane.body.len(), lane.spans.len());
        let mut samples = 0;
        let (checks, router, unrouted) = (&mut self.checks, &mut self.router, &mut self.unrouted);
        checks.start(placement);
        let visited = self.decoder.visit(payload, |s| {
            let kept = checks.within(&s);
            if kept.is_empty() {
                return;
            }
            let route = match router.route_of(&s) {
                Ok(r) => r,
                Err(why) => return unrouted.push(&s, kept, why),
            };
            let start = lane.body.len();
            push_timeseries(&mut lane.body, s.name, s.labels, kept);
            lane.spans.push(Span {
                start,
                end: lane.body.len(),
                offset,
                route,
                samples: kept.len().min(u32::MAX as usize) as u32,
            });
            samples += kept.len();
        });
        let (cut, unrouted) = match &visited {
            Ok(_) => (checks.finish(), unrouted.finish()),
            Err(_) => {
                checks.reset();
                unrouted.reset();
                (None, None)
            }
        };
        if let Err(e) = visited {
            // Undo what a record that turned out corrupt half-way appended.
            lane.body.truncate(body_len);
            lane.spans.truncate(spans_len);
            // Dead-letter it before counting it done: it is never dropped unseen.
            let error = e.to_string();
            self.dead_letter_durably(m, payload, e.kind(), &error).await;
            self.store_if_idle(&p);
            return Ok(());
        }
        if let Some(cut) = cut {
            // What the checks cut is a dead letter of its own; the rest of the record
            // goes on to the TSDB.
            self.dead_letter_durably(m, &cut.payload, cut.kind, &cut.error)
                .await;
        }
        if let Some((payload, kind, error)) = unrouted {
            self.dead_letter_durably(m, &payload, kind, &error).await;
        }
        let lane = lane_of(&mut self.lanes, &mut self.generations, &p);
        metrics::counter!("weir_tsdb_writer_samples_total", "outcome" => "read")
            .increment(samples as u64);
        if lane.spans.len() == spans_len {
            self.store_if_idle(&p);
            return Ok(());
        }
        lane.oldest.get_or_insert_with(Instant::now);
        lane.samples += samples;
        let (buffered, bytes, paused) = (lane.samples, lane.body.len(), lane.paused);
        if (buffered >= max_buffered || bytes >= max_buffered_bytes) && !paused {
            self.pause(&p, true);
        }
        if buffered >= max_batch || bytes >= max_batch_bytes {
            self.dispatch(&p);
        }
        Ok(())
    }

    /// Where a record of `topic` read from `partition` sits, for the partition check;
    /// `None` while the topic's partition count cannot be read (asked once per
    /// assignment).
    async fn placement(&mut self, topic: &str, partition: i32) -> Option<Placement> {
        if !self.partitions.contains_key(topic) {
            let consumer = self.shared.consumer.clone();
            let t = topic.to_string();
            let n = tokio::task::spawn_blocking(move || {
                partition_count(consumer.client(), &t, Duration::from_secs(5))
            })
            .await;
            let n = match n {
                Ok(Ok(n)) => Some(n),
                Ok(Err(e)) => {
                    tracing::warn!(%topic, error = %e, "reading the partition count; partitions unchecked until the next assignment");
                    None
                }
                Err(_) => None,
            };
            self.partitions.insert(topic.to_string(), n);
        }
        let partitions = self.partitions.get(topic).copied().flatten()?;
        Some(Placement {
            partition: u32::try_from(partition).ok()?,
            partitions,
        })
    }

    /// Writes a dead letter for the record `m` (or part of it), retrying with backoff while
    /// the dead-letter topic cannot be written, rather than skip it or exit.
    async fn dead_letter_durably(
        &self,
        m: &BorrowedMessage<'_>,
        payload: &[u8],
        kind: &str,
        error: &str,
    ) {
        let cfg = &self.shared.cfg;
        let d = DeadLetter {
            source_topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload,
            kind,
            error,
        };
        self.shared
            .dlq
            .send_retrying(d, Backoff::new(cfg.retry_initial, cfg.retry_max))
            .await;
    }

    /// Stores the lane's next offset when nothing of it is buffered or in flight.
    fn store_if_idle(&mut self, p: &PartitionId) {
        let Some(lane) = self.lanes.get_mut(p) else {
            return;
        };
        if lane.in_flight || !lane.spans.is_empty() {
            return;
        }
        if let Some(last) = lane.last_offset {
            if last + 1 > lane.stored_next
                && store_next_offset(&*self.shared.consumer, p, last + 1).is_ok()
            {
                lane.stored_next = last + 1;
            }
        }
    }

    fn pause(&mut self, p: &PartitionId, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.0, p.1);
        let r = if pause {
            self.shared.consumer.pause(&tpl)
        } else {
            self.shared.consumer.resume(&tpl)
        };
        match r {
            Ok(()) => {
                if let Some(l) = self.lanes.get_mut(p) {
                    l.paused = pause;
                }
                let paused = self.lanes.values().filter(|l| l.paused).count();
                metrics::gauge!("weir_tsdb_writer_paused_partitions").set(paused as f64);
                tracing::info!(topic = %p.0, partition = p.1, paused = pause, "partition {}", if pause { "paused: buffer full while the sink catches up" } else { "resumed" });
            }
            Err(e) => tracing::warn!(error = %e, "pause/resume"),
        }
    }

    fn flush_due(&mut self, all: bool) {
        let max_delay = self.shared.cfg.max_batch_delay;
        let mut due: Vec<(Option<Instant>, PartitionId)> = self
            .lanes
            .iter()
            .filter(|(_, l)| {
                !l.in_flight
                    && !l.spans.is_empty()
                    && (all || l.oldest.is_some_and(|t| t.elapsed() >= max_delay))
            })
            .map(|(p, l)| (l.oldest, p.clone()))
            .collect();
        // Oldest first: when permits are short, no partition waits behind the others
        // tick after tick.
        due.sort();
        for (_, p) in due {
            self.dispatch(&p);
        }
    }

    fn dispatch(&mut self, p: &PartitionId) {
        let Some(lane) = self.lanes.get_mut(p) else {
            return;
        };
        if lane.in_flight || lane.spans.is_empty() {
            return;
        }
        // Bounded concurrency: a lane that finds no permit is retried on the next tick.
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return;
        };
        // The next batch will be about as large: keep the capacity.
        let cap = lane.body.capacity();
        let body = std::mem::replace(&mut lane.body, Vec::with_capacity(cap));
        let spans = std::mem::take(&mut lane.spans);
        let samples = std::mem::take(&mut lane.samples);
        let next = lane.last_offset.map(|o| o + 1);
        lane.oldest = None;
        lane.in_flight = true;
        self.in_flight += 1;
        metrics::gauge!("weir_tsdb_writer_in_flight_requests").set(self.in_flight as f64);
        let generation = lane.generation;
        let parts = split_by_route(&self.router, body, spans);
        let shared = self.shared.clone();
        let tx = self.done_tx.clone();
        let p = p.clone();
        shared.assignment.begin(&p);
        tokio::spawn(async move {
            // The tenants' requests of one batch go out together; the batch is done
            // when every one of them is.
            let delivered =
                futures::future::join_all(parts.into_iter().map(|part| deliver(&shared, &p, part)))
                    .await;
            let ok = delivered.into_iter().all(|ok| ok);
            let mut stored = None;
            if ok {
                metrics::counter!("weir_tsdb_writer_samples_total", "outcome" => "acknowledged")
                    .increment(samples as u64);
                // Everything of this partition before `next` is now acknowledged. Stored
                // here, not by the event loop, so a revocation waiting in the consumer's
                // callback sees it before it commits.
                if let Some(next) = next.filter(|_| shared.assignment.is_assigned(&p)) {
                    match store_next_offset(&*shared.consumer, &p, next) {
                        Ok(()) => stored = Some(next),
                        Err(e) => tracing::debug!(error = %e, "store offset"),
                    }
                }
            }
            shared.assignment.end(&p);
            drop(permit);
            let _ = tx.send(Done {
                partition: p,
                generation,
                stored,
            });
        });
    }

    fn on_done(&mut self, d: Done) {
        self.in_flight -= 1;
        metrics::gauge!("weir_tsdb_writer_in_flight_requests").set(self.in_flight as f64);
        let cfg = &self.shared.cfg;
        let (cfg_max, batch_max) = (cfg.max_buffered_samples, cfg.max_batch_samples);
        let (bytes_max, batch_bytes_max) = (
            cfg.max_buffered_bytes.as_u64() as usize,
            cfg.max_batch_bytes.as_u64() as usize,
        );
        let Some(lane) = self.lanes.get_mut(&d.partition) else {
            return;
        };
        if lane.generation != d.generation {
            // A delivery of a lane dropped at a revocation: not this lane's request.
            return;
        }
        lane.in_flight = false;
        if let Some(next) = d.stored {
            lane.stored_next = lane.stored_next.max(next);
        }
        let (paused, samples, bytes) = (lane.paused, lane.samples, lane.body.len());
        if paused && samples < cfg_max / 2 && bytes < bytes_max / 2 {
            self.pause(&d.partition, false);
        }
        if samples >= batch_max || bytes >= batch_bytes_max {
            self.dispatch(&d.partition);
        }
        self.store_if_idle(&d.partition);
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        tracing::info!("draining: sending what is buffered, waiting for in-flight batches");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.flush_due(true);
            if self.in_flight == 0 && self.lanes.values().all(|l| l.spans.is_empty()) {
                break;
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    "drain timed out; unacknowledged records stay uncommitted and are read again"
                );
                self.shared.hard_stop.cancel();
                break;
            }
            if let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_millis(100), self.done_rx.recv()).await
            {
                self.on_done(d);
            }
        }
        let consumer = self.shared.consumer.clone();
        tokio::task::spawn_blocking(move || {
            consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        })
        .await?
        .or_else(|e| {
            // Nothing stored since the last commit is not an error.
            tracing::debug!(error = %e, "final commit");
            Ok::<(), rdkafka::error::KafkaError>(())
        })?;
        tracing::info!("tsdb-writer stopped; offsets committed");
        Ok(())
    }
}

/// The lane of a partition, made (with a new generation) when there is none.
fn lane_of<'l>(
    lanes: &'l mut HashMap<PartitionId, Lane>,
    generations: &mut u64,
    p: &PartitionId,
) -> &'l mut Lane {
    lanes.entry(p.clone()).or_insert_with(|| {
        *generations += 1;
        Lane {
            generation: *generations,
            ..Lane::default()
        }
    })
}

/// Cuts a batch into one part per route: as it is when every series has the same route
/// (always, with tenancy off), else by copying each series' bytes to its route's part,
/// in order, so a series' samples keep their order within its tenant's request.
fn split_by_route(router: &Router, body: Vec<u8>, spans: Vec<Span>) -> Vec<Part> {
    let first = spans.first().map_or(0, |s| s.route);
    if spans.iter().all(|s| s.route == first) {
        return vec![Part {
            route: router.route(first).clone(),
            body,
            spans,
        }];
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    for span in spans {
        let i = *index.entry(span.route).or_insert_with(|| {
            parts.push(Part {
                route: router.route(span.route).clone(),
                body: Vec::new(),
                spans: Vec::new(),
            });
            parts.len() - 1
        });
        let part = &mut parts[i];
        let start = part.body.len();
        part.body.extend_from_slice(&body[span.start..span.end]);
        part.spans.push(Span {
            start,
            end: part.body.len(),
            ..span
        });
    }
    parts
}

/// Writes one tenant's part of a batch: retries what may succeed later, splits what the
/// receiver refuses until the refused series are alone and dead-letters those. `false`
/// only when a hard stop interrupted it (the batch is then neither acknowledged nor
/// stored).
async fn deliver(shared: &Shared, p: &PartitionId, part: Part) -> bool {
    let Part { route, body, spans } = part;
    let cfg = &shared.cfg;
    // Ranges of `spans`, each sent as one request; consecutive spans are contiguous
    // bytes, so a range's request body is one slice of `body`.
    let mut stack = vec![(0, spans.len())];
    while let Some((i, j)) = stack.pop() {
        let request = &body[spans[i].start..spans[j - 1].end];
        let compressed = bytes::Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(request)
                .expect("snappy encodes any input"),
        );
        let mut backoff = Backoff::new(cfg.retry_initial, cfg.retry_max);
        loop {
            match route.sink.send_to(&route.target, compressed.clone()).await {
                Ok(()) => {
                    metrics::counter!("weir_tsdb_writer_requests_total", "outcome" => "ok")
                        .increment(1);
                    if !route.tenant.is_empty() {
                        let samples: u64 = spans[i..j].iter().map(|s| u64::from(s.samples)).sum();
                        metrics::counter!("weir_tsdb_writer_tenant_samples_total", "tenant" => route.tenant.clone())
                            .increment(samples);
                    }
                    if !shared.health.is_ready() {
                        tracing::info!(sink = route.target.shown_url(), "sink is writable again");
                        shared.health.set_ready();
                    }
                    break;
                }
                Err(SendError::Retryable(why)) => {
                    metrics::counter!("weir_tsdb_writer_requests_total", "outcome" => "retry")
                        .increment(1);
                    if shared.health.is_ready() {
                        tracing::warn!(error = %why, "sink write failed; retrying with backoff");
                    }
                    shared.health.set_not_ready(format!("sink failing: {why}"));
                    if !backoff.wait_unless(&shared.hard_stop).await {
                        return false;
                    }
                }
                Err(SendError::Rejected { status, body: why }) => {
                    metrics::counter!("weir_tsdb_writer_requests_total", "outcome" => "rejected")
                        .increment(1);
                    if j - i > 1 {
                        let mid = i + (j - i) / 2;
                        // LIFO: push the second half first so the first is written first.
                        stack.push((mid, j));
                        stack.push((i, mid));
                        break;
                    }
                    let span = spans[i];
                    let error = format!("receiver answered {status}: {why}");
                    match dead_letter(shared, p, &body[span.start..span.end], span.offset, &error)
                        .await
                    {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot write the dead letter; retrying the series");
                            if !backoff.wait_unless(&shared.hard_stop).await {
                                return false;
                            }
                        }
                    }
                }
            }
        }
    }
    true
}

/// Sends one refused series to the dead-letter topic as an Avro record of its own, so
/// it can be inspected and replayed like any `metrics.raw` record.
async fn dead_letter(
    shared: &Shared,
    p: &PartitionId,
    timeseries: &[u8],
    offset: i64,
    error: &str,
) -> anyhow::Result<()> {
    let series = series_of(timeseries)?;
    let samples = series.samples.len();
    let key = series.key();
    let record = BatchEncoder::encode(&MetricsBatch {
        series: vec![series],
    });
    shared
        .dlq
        .send(DeadLetter {
            source_topic: &p.0,
            partition: p.1,
            offset,
            key: Some(key.as_bytes()),
            payload: &record,
            kind: "sink_rejected",
            error,
        })
        .await?;
    metrics::counter!("weir_tsdb_writer_samples_total", "outcome" => "dead_lettered")
        .increment(samples as u64);
    Ok(())
}
