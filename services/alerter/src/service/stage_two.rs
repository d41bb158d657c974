//! Stage two on Kafka: one consumer-group member per process reads the repartition
//! topic; per partition it restores the alert state, merges and steps (see
//! [`super::merge`]), and after each evaluated step writes, in this order, the events to
//! the events topic, the changed alerts and progress to the state topic, and only then
//! lets the offset be committed. A crash between the first two writes leaves events the
//! stored state does not know of; the next owner finds them on restore (by their
//! headers) and does not announce them again.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weir_contract::avro::{encode_alert_event, AlertEvent, AlertStatus};
use weir_runtime::backoff::Backoff;
use weir_runtime::consumer::{publish_assigned, GroupContext, Rebalancing};
use weir_runtime::dead_letter::{DeadLetter, DeadLetters};
use weir_runtime::ops::Health;

use crate::alerting::{Alert, State, Transition};
use crate::labels::Labels;
use crate::notify::{now_ms, Notifier};
use crate::ruleset::RuleSet;
use crate::service::merge::{announced, MergeState, StepResult};
use crate::service::partials::StepRecord;
use crate::service::state::{
    alert_key, announced_header, encode_alert, encode_progress, progress_key, restore,
    HEADER_ANNOUNCED, HEADER_DESTINATION,
};

enum Change {
    Assigned(i32),
    Revoked(i32),
}

/// The merge stage's rebalancing: a revoked partition is committed where its progress
/// was stored, so the next owner resumes exactly there.
struct MergeRebalancing {
    topic: String,
    changes: Arc<Mutex<VecDeque<Change>>>,
    /// Per partition, the offset that may be committed (first record of a step not yet
    /// evaluated and stored).
    resume: Arc<Mutex<HashMap<i32, i64>>>,
}

type MergeContext = GroupContext<MergeRebalancing>;

impl Rebalancing for MergeRebalancing {
    fn revoking(
        &self,
        consumer: &BaseConsumer<MergeContext>,
        group: &str,
        tpl: &TopicPartitionList,
    ) {
        let parts: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        // Commit before the next owner starts: it resumes exactly where we stored.
        let list = self
            .resume
            .lock()
            .map(|r| commit_list(&self.topic, &r, &parts));
        if let Ok(list) = list {
            if list.count() > 0 {
                if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                    tracing::warn!(%group, error = %e, "commit on revoke failed");
                }
            }
        }
        if let Ok(mut c) = self.changes.lock() {
            c.extend(parts.into_iter().map(Change::Revoked));
        }
    }

    fn assigned(
        &self,
        _consumer: &BaseConsumer<MergeContext>,
        _group: &str,
        tpl: &TopicPartitionList,
    ) {
        if let Ok(mut c) = self.changes.lock() {
            c.extend(
                tpl.elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| Change::Assigned(e.partition())),
            );
        }
    }
}

fn commit_list(topic: &str, resume: &HashMap<i32, i64>, parts: &[i32]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        if let Some(o) = resume.get(p) {
            let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
        }
    }
    tpl
}

/// Everything stage two needs, built once by the service.
pub struct StageTwo {
    pub rules: Arc<RuleSet>,
    pub external_labels: Labels,
    pub consumer_config: ClientConfig,
    /// For restores: plain reads of the state and events topics.
    pub reader_config: ClientConfig,
    pub group: String,
    pub partials_topic: String,
    pub state_topic: String,
    pub state_partitions: u32,
    pub events_topic: String,
    pub events_partitions: u32,
    /// Partitions of metrics.raw: a step is complete once each of them came past it.
    pub sources: u32,
    /// Partitions of the repartition topic.
    pub destinations: u32,
    pub events: FutureProducer,
    pub state: FutureProducer,
    pub notifier: Arc<Mutex<Notifier>>,
    /// Wakes the notifier when an alert fired or resolved: it sends at once instead of
    /// on its next one-second round.
    pub notify_wake: Arc<tokio::sync::Notify>,
    pub generator_url: String,
    pub health: Health,
    pub retry_max: Duration,
    /// See `alerter.max_pending_steps`.
    pub max_pending_steps: usize,
    /// Where a partials record that cannot be read goes.
    pub dlq: Arc<DeadLetters>,
}

/// Partials records read before the changes they made are stored.
const MAX_BATCH: usize = 256;

/// An alert as announced: with the external labels it lacks.
pub fn announced_alert(a: &Alert, external: &Labels) -> Alert {
    let mut out = a.clone();
    for (k, v) in external.iter() {
        if a.labels.get(k).is_empty() {
            out.labels.set(k, v);
        }
    }
    out
}

impl StageTwo {
    /// Runs until `stop`; then commits what is stored and leaves the group.
    pub fn run(self, rt: tokio::runtime::Handle, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
        let changes = Arc::new(Mutex::new(VecDeque::new()));
        let resume = Arc::new(Mutex::new(HashMap::new()));
        let consumer: BaseConsumer<MergeContext> =
            self.consumer_config.create_with_context(GroupContext {
                group: self.group.clone(),
                rebalancing: MergeRebalancing {
                    topic: self.partials_topic.clone(),
                    changes: changes.clone(),
                    resume: resume.clone(),
                },
            })?;
        consumer.subscribe(&[&self.partials_topic])?;
        let mut states: HashMap<i32, MergeState> = HashMap::new();
        let mut positions: HashMap<i32, i64> = HashMap::new();
        let mut committed: HashMap<i32, i64> = HashMap::new();
        let mut last_commit = Instant::now();
        // Partitions with evaluated steps whose progress is not stored yet, and since when.
        let mut dirty: HashMap<i32, Instant> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            // Read what is there (up to a bound), then store what it changed for every
            // destination at once: the writes of all partitions overlap instead of
            // queueing behind each other, which keeps a step's last alert as quick as
            // its first.
            let mut batch: HashMap<i32, Vec<StepResult>> = HashMap::new();
            let mut read: HashMap<i32, i64> = HashMap::new();
            let mut timeout = Duration::from_millis(100);
            for _ in 0..MAX_BATCH {
                let msg = consumer.poll(timeout);
                timeout = Duration::ZERO;
                let drained: Vec<Change> = changes
                    .lock()
                    .map(|mut c| c.drain(..).collect())
                    .unwrap_or_default();
                for ch in drained {
                    match ch {
                        Change::Assigned(q) => {
                            if let std::collections::hash_map::Entry::Vacant(e) = states.entry(q) {
                                let mut st = self.restore_until_done(q, &stop)?;
                                st.max_pending = self.max_pending_steps;
                                e.insert(st);
                            }
                        }
                        Change::Revoked(q) => {
                            // What was read and not stored yet is dropped with the
                            // partition, as in a crash: its offsets were not committed,
                            // so the next owner evaluates it again.
                            batch.remove(&q);
                            read.remove(&q);
                            dirty.remove(&q);
                            if let Some(st) = states.remove(&q) {
                                self.forget(&st);
                            }
                            positions.remove(&q);
                            committed.remove(&q);
                            if let Ok(mut r) = resume.lock() {
                                r.remove(&q);
                            }
                        }
                    }
                    publish_assigned(&self.group, "merge", states.len());
                }
                let m = match msg {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(topic = %self.partials_topic, error = %e, "consumer error");
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                let q = m.partition();
                let offset = m.offset();
                if let std::collections::hash_map::Entry::Vacant(e) = states.entry(q) {
                    e.insert(self.restore_until_done(q, &stop)?);
                }
                let Some(st) = states.get_mut(&q) else {
                    continue;
                };
                positions.insert(q, offset + 1);
                read.insert(q, offset + 1);
                match StepRecord::decode(m.payload().unwrap_or_default()) {
                    Ok(rec) => {
                        metrics::counter!("weir_alerter_partials_records_total", "stage" => "merge").increment(1);
                        let results = st.absorb(
                            &self.rules,
                            &self.external_labels,
                            self.sources,
                            offset,
                            rec,
                        );
                        let now = now_ms();
                        for r in &results {
                            metrics::counter!("weir_alerter_steps_total", "stage" => "merge")
                                .increment(1);
                            // Event time behind wall time when the step was evaluated.
                            metrics::histogram!("weir_alerter_step_delay_seconds")
                                .record((now - r.step) as f64 / 1000.0);
                        }
                        let (changed, progress): (Vec<_>, Vec<_>) = results
                            .into_iter()
                            .partition(|r| !r.transitions.is_empty() || !r.changed.is_empty());
                        if !changed.is_empty() {
                            batch.entry(q).or_default().extend(changed);
                        } else if !progress.is_empty() && !batch.contains_key(&q) {
                            // Nothing but progress: stored within a second (below).
                            dirty.entry(q).or_insert_with(Instant::now);
                        }
                        metrics::gauge!("weir_alerter_pending_steps", "partition" => q.to_string())
                            .set(st.pending_steps() as f64);
                    }
                    Err(e) => {
                        // Only weir writes this topic; a record it cannot read is a
                        // version mismatch or corruption, not data to stop on. Its step
                        // is evaluated without that source's partials: said in the dead
                        // letter and the log, counted.
                        metrics::counter!("weir_alerter_errors_total", "kind" => "undecodable_partials").increment(1);
                        let error =
                            format!("{e}; the step it carried is evaluated without these partials");
                        tracing::error!(partition = q, offset, error = %error, "undecodable partials record to the dead-letter topic");
                        self.dlq.send_blocking(
                            &rt,
                            DeadLetter {
                                source_topic: &self.partials_topic,
                                partition: q,
                                offset,
                                key: m.key(),
                                payload: m.payload().unwrap_or_default(),
                                kind: "undecodable_partials",
                                error: &error,
                            },
                        );
                    }
                }
            }
            let mut unstored: HashSet<i32> = batch.keys().copied().collect();
            if !batch.is_empty() {
                let writes = states.iter_mut().filter_map(|(q, st)| {
                    let results = batch.remove(q)?;
                    Some(self.persist(*q, st, results, &stop))
                });
                for q in rt.block_on(join_all(writes)).into_iter().flatten() {
                    unstored.remove(&q);
                    dirty.remove(&q);
                }
            }
            // Past evaluated steps only once their progress is stored: until then a
            // restore must read their records again.
            for (q, next) in read {
                if dirty.contains_key(&q) || unstored.contains(&q) {
                    continue;
                }
                if let (Some(st), Ok(mut r)) = (states.get(&q), resume.lock()) {
                    r.insert(q, st.resume_offset(next));
                }
            }
            // A partition whose changes just failed to store (the process is stopping)
            // must not have its progress stored past them either.
            let due: Vec<i32> = dirty
                .iter()
                .filter(|(q, since)| {
                    since.elapsed() >= Duration::from_secs(1) && !unstored.contains(q)
                })
                .map(|(q, _)| *q)
                .collect();
            for q in due {
                let (Some(st), Some(pos)) = (states.get_mut(&q), positions.get(&q)) else {
                    dirty.remove(&q);
                    continue;
                };
                if rt
                    .block_on(self.persist(q, st, Vec::new(), &stop))
                    .is_some()
                {
                    dirty.remove(&q);
                    if let Ok(mut r) = resume.lock() {
                        r.insert(q, st.resume_offset(*pos));
                    }
                }
            }
            if last_commit.elapsed() >= Duration::from_secs(1) {
                last_commit = Instant::now();
                self.commit(&consumer, &resume, &mut committed, CommitMode::Async);
            }
        }
        self.commit(&consumer, &resume, &mut committed, CommitMode::Sync);
        tracing::info!(
            partitions = states.len(),
            "merge stage stored and committed"
        );
        Ok(())
    }

    fn commit(
        &self,
        consumer: &BaseConsumer<MergeContext>,
        resume: &Mutex<HashMap<i32, i64>>,
        committed: &mut HashMap<i32, i64>,
        mode: CommitMode,
    ) {
        let Ok(r) = resume.lock() else { return };
        let changed: Vec<i32> = r
            .iter()
            .filter(|(q, o)| committed.get(q) != Some(o))
            .map(|(q, _)| *q)
            .collect();
        if changed.is_empty() {
            return;
        }
        let list = commit_list(&self.partials_topic, &r, &changed);
        match consumer.commit(&list, mode) {
            Ok(()) => {
                for q in changed {
                    committed.insert(q, r[&q]);
                }
            }
            Err(e) => tracing::warn!(error = %e, "committing the partials topic"),
        }
    }

    fn restore_until_done(&self, q: i32, stop: &AtomicBool) -> anyhow::Result<MergeState> {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.retry_max);
        loop {
            match restore(
                &self.reader_config,
                &self.rules,
                &self.state_topic,
                self.state_partitions,
                &self.events_topic,
                self.events_partitions,
                q,
                self.destinations,
            ) {
                Ok(st) => {
                    self.remember(&st);
                    // A restored destination may have nothing left to evaluate: say how
                    // far it is from the start.
                    if let Some(e) = st.progress.evaluated {
                        metrics::gauge!("weir_alerter_evaluated_step_seconds", "partition" => q.to_string())
                            .set(e as f64 / 1000.0);
                    }
                    return Ok(st);
                }
                Err(e) => {
                    tracing::warn!(
                        partition = q,
                        error = format!("{e:#}"),
                        "restoring alert state; retrying"
                    );
                    self.health
                        .set_not_ready(format!("restoring alert state: {e:#}"));
                }
            }
            if stop.load(Ordering::Relaxed) {
                anyhow::bail!("stopped while restoring partition {q}");
            }
            backoff.sleep();
        }
    }

    /// Restored alerts go to the notifier: firing ones keep being re-sent, recent
    /// resolves are announced again (the last run may not have sent them).
    fn remember(&self, st: &MergeState) {
        let Ok(mut n) = self.notifier.lock() else {
            return;
        };
        let now = now_ms();
        for a in st.states.iter().flat_map(|s| s.active.values()) {
            let a = announced_alert(a, &self.external_labels);
            match a.state {
                State::Firing => n.firing(&a, &self.generator_url),
                State::Inactive if a.fired_at.is_some() => n.resolved(&a, &self.generator_url, now),
                _ => {}
            }
        }
        self.notify_wake.notify_one();
    }

    fn forget(&self, st: &MergeState) {
        let Ok(mut n) = self.notifier.lock() else {
            return;
        };
        for a in st.states.iter().flat_map(|s| s.active.values()) {
            n.forget(announced_alert(a, &self.external_labels).fingerprint());
        }
    }

    /// Writes what the steps changed: events first, then state, retrying until both are
    /// durable; then `Some(q)`. `None` when the process stopped first: the caller must
    /// not commit past what this was to store.
    async fn persist(
        &self,
        q: i32,
        st: &mut MergeState,
        results: Vec<StepResult>,
        stop: &AtomicBool,
    ) -> Option<i32> {
        let started = Instant::now();
        let now = now_ms();
        let mut events: Vec<(String, Vec<u8>, String)> = Vec::new();
        // Alertmanager hears of a transition only once its event and state are durable: a
        // crash before then must not have announced what the next owner never saw.
        let mut announce = Vec::new();
        for r in &results {
            for (rule, t, done) in &r.transitions {
                let (a, status) = match t {
                    Transition::Firing(a) => (a, AlertStatus::Firing),
                    Transition::Resolved(a) => (a, AlertStatus::Resolved),
                };
                let shown = announced_alert(a, &self.external_labels);
                let label = if status == AlertStatus::Firing {
                    "firing"
                } else {
                    "resolved"
                };
                if *done {
                    metrics::counter!("weir_alerter_events_total", "status" => label, "outcome" => "already_announced").increment(1);
                    announce.push((shown, status));
                    continue;
                }
                let group = &self.rules.group(*rule).name;
                let rule = self.rules.rule(*rule);
                let fp = format!("{:016x}", shown.fingerprint());
                let episode = shown.episode();
                let labels: Vec<(String, String)> = shown
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let annotations: Vec<(String, String)> = shown
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let payload = encode_alert_event(&AlertEvent {
                    status,
                    alertname: &rule.name,
                    labels: &labels,
                    annotations: &annotations,
                    value: a.value,
                    starts_at: a.fired_at.unwrap_or(a.active_at),
                    ends_at: a.resolved_at.filter(|_| status == AlertStatus::Resolved),
                    fingerprint: &fp,
                    episode: &episode,
                    group,
                    expr: &rule.expr,
                });
                events.push((fp, payload, announced_header(announced(t))));
                announce.push((shown, status));
                metrics::counter!("weir_alerter_events_total", "status" => label, "outcome" => "written").increment(1);
            }
        }
        let qs = q.to_string();
        // 1. Events. A retry sends only those not acknowledged yet: resending all would
        // put the others on the topic twice.
        let mut backoff = Backoff::new(Duration::from_millis(100), self.retry_max);
        loop {
            let sends = events.iter().map(|(key, payload, ann)| {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: HEADER_DESTINATION,
                        value: Some(qs.as_str()),
                    })
                    .insert(Header {
                        key: HEADER_ANNOUNCED,
                        value: Some(ann.as_str()),
                    });
                self.events.send(
                    FutureRecord::to(&self.events_topic)
                        .key(key)
                        .payload(payload)
                        .headers(headers),
                    Duration::from_secs(30),
                )
            });
            let acks = join_all(sends).await;
            let mut failed = None;
            let mut acked = Vec::with_capacity(acks.len());
            for r in acks {
                acked.push(r.is_ok());
                match r {
                    Ok(d) => {
                        let next = d.offset + 1;
                        match st
                            .progress
                            .events_from
                            .iter_mut()
                            .find(|(p, _)| *p == d.partition)
                        {
                            Some(e) => e.1 = e.1.max(next),
                            None => st.progress.events_from.push((d.partition, next)),
                        }
                    }
                    Err((e, _)) => failed = Some(e),
                }
            }
            let mut i = 0;
            events.retain(|_| {
                i += 1;
                !acked[i - 1]
            });
            match failed {
                None => break,
                Some(e) => {
                    self.sink_failed("events", &e.to_string(), &mut backoff)
                        .await;
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                }
            }
        }
        // 2. State: changed alerts, then progress.
        let sp = q.rem_euclid(self.state_partitions.max(1) as i32);
        let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for r in &results {
            for (rule, fp, a) in &r.changed {
                let v = a
                    .as_ref()
                    .map(|a| encode_alert(&self.rules.rule(*rule).name, a));
                records.push((alert_key(q, *rule, *fp), v));
            }
        }
        records.push((progress_key(q), Some(encode_progress(&st.progress))));
        let mut backoff = Backoff::new(Duration::from_millis(100), self.retry_max);
        loop {
            let sends = records.iter().map(|(k, v)| {
                let mut rec = FutureRecord::<String, Vec<u8>>::to(&self.state_topic)
                    .key(k)
                    .partition(sp);
                if let Some(v) = v {
                    rec = rec.payload(v);
                }
                self.state.send(rec, Duration::from_secs(30))
            });
            let acks = join_all(sends).await;
            let failed = acks
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(|(e, _)| e.to_string());
            let progress = records.last().cloned();
            let mut i = 0;
            records.retain(|_| {
                i += 1;
                acks[i - 1].is_err()
            });
            // Progress goes last, after every alert it accounts for: resent (harmless,
            // the topic is compacted by key) whenever one of those is resent.
            if let Some(p) = progress {
                if !records.is_empty() && records.last().map(|r| &r.0) != Some(&p.0) {
                    records.push(p);
                }
            }
            match failed {
                None => break,
                Some(e) => {
                    self.sink_failed("state", &e, &mut backoff).await;
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                }
            }
        }
        self.health.set_ready();
        if let Some(e) = st.progress.evaluated {
            // How far this destination has evaluated and stored, in event time.
            metrics::gauge!("weir_alerter_evaluated_step_seconds", "partition" => qs.clone())
                .set(e as f64 / 1000.0);
        }
        metrics::histogram!("weir_alerter_sink_seconds", "sink" => "kafka")
            .record(started.elapsed().as_secs_f64());
        // Alertmanager hears of a transition once its event and state are durable.
        if !announce.is_empty() {
            if let Ok(mut n) = self.notifier.lock() {
                for (shown, status) in &announce {
                    match status {
                        AlertStatus::Firing => n.firing(shown, &self.generator_url),
                        AlertStatus::Resolved => n.resolved(shown, &self.generator_url, now),
                    }
                }
            }
            self.notify_wake.notify_one();
        }
        Some(q)
    }

    async fn sink_failed(&self, what: &str, error: &str, backoff: &mut Backoff) {
        metrics::counter!("weir_alerter_errors_total", "kind" => format!("{what}_write"))
            .increment(1);
        tracing::warn!(error, "writing alert {what} failed; retrying");
        self.health
            .set_not_ready(format!("writing alert {what}: {error}"));
        backoff.wait().await;
    }
}
