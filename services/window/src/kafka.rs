//! The Kafka [`EventLog`]: one consumer-group member per timely worker.
//!
//! Offsets are committed explicitly, with a [`Checkpoint`] as the commit's metadata, only
//! as far as [`Progress`] allows. On revocation the revoked partitions are committed
//! synchronously inside the rebalance callback, before the next owner reads them; on
//! assignment the committed checkpoint is read back and handed to the source.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use weir_runtime::consumer::{publish_assigned, GroupContext, Rebalancing};
use weir_runtime::dead_letter::{DeadLetter, DeadLetters};
use weir_runtime::kafka::partition_count;

use crate::checkpoint::Checkpoint;
use crate::operators::source::{EventLog, LogEvent, Progress};
use weir_runtime::input_checks::{Cut, Placement};

enum Change {
    Assigned(u32, i64, Checkpoint),
    Revoked(u32),
}

/// The log's rebalancing: revoked partitions are committed (as far as [`Progress`]
/// allows) before the next owner reads them; assigned ones are reported with the
/// checkpoint committed with them.
pub struct LogRebalancing {
    topic: String,
    progress: Arc<Mutex<Progress>>,
    changes: Arc<Mutex<VecDeque<Change>>>,
}

type LogContext = GroupContext<LogRebalancing>;

fn commit_list(topic: &str, commits: &[(u32, i64, Checkpoint)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (p, o, c) in commits {
        if *o < 0 {
            continue;
        }
        let mut e = tpl.add_partition(topic, *p as i32);
        if e.set_offset(Offset::Offset(*o)).is_ok() {
            e.set_metadata(c.encode());
        }
    }
    tpl
}

impl Rebalancing for LogRebalancing {
    fn revoking(&self, consumer: &BaseConsumer<LogContext>, group: &str, tpl: &TopicPartitionList) {
        let parts: Vec<u32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition() as u32)
            .collect();
        let commits: Vec<_> = match self.progress.lock() {
            Ok(mut p) => p
                .committable()
                .into_iter()
                .filter(|(part, _, _)| parts.contains(part))
                .collect(),
            Err(_) => Vec::new(),
        };
        let list = commit_list(&self.topic, &commits);
        if list.count() > 0 {
            match consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(%group, partitions = ?parts, "committed revoked partitions")
                }
                Err(e) => {
                    tracing::warn!(%group, error = %e, "commit on revoke failed; the next owner re-reads more")
                }
            }
        }
        if let Ok(mut c) = self.changes.lock() {
            c.extend(parts.into_iter().map(Change::Revoked));
        }
    }

    fn assigned(&self, consumer: &BaseConsumer<LogContext>, group: &str, tpl: &TopicPartitionList) {
        // Where each partition resumes, and the checkpoint committed with it.
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .unwrap_or_else(|e| {
                tracing::warn!(%group, error = %e, "reading committed offsets");
                tpl.clone()
            });
        let mut changes = Vec::new();
        for e in committed.elements_for_topic(&self.topic) {
            let next = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            let cp = Checkpoint::decode(e.metadata());
            tracing::info!(%group, partition = e.partition(), offset = next, checkpoint = ?cp, "partition assigned");
            changes.push(Change::Assigned(e.partition() as u32, next, cp));
        }
        if let Ok(mut c) = self.changes.lock() {
            c.extend(changes);
        }
    }
}

/// Turns a record's payload into events; samples it cut out of the record (see
/// [`InputChecks`](weir_runtime::input_checks::InputChecks)) come back to go to the dead-letter topic.
/// The record's placement is `None` while the topic's partition count is not known.
pub type DecodeFn<K, V> =
    Box<dyn FnMut(&[u8], Option<Placement>, &mut Vec<(K, i64, V)>) -> Result<Option<Cut>, String>>;
/// Takes records that could not be decoded (to a dead-letter topic); must not return
/// before they are durable, since their offsets are committed afterwards.
pub type DeadLetterFn = Box<dyn FnMut(DeadLetter<'_>)>;

/// A consumer-group member reading one topic.
pub struct KafkaLog<K, V> {
    consumer: BaseConsumer<LogContext>,
    group: String,
    /// Names this member in metrics (the timely worker index).
    member: String,
    topic: String,
    decode: DecodeFn<K, V>,
    dead_letter: DeadLetterFn,
    progress: Arc<Mutex<Progress>>,
    changes: Arc<Mutex<VecDeque<Change>>>,
    assigned: Vec<u32>,
    paused: bool,
    max_records_per_poll: usize,
    commit_interval: Duration,
    last_commit: Instant,
    committed: HashMap<u32, i64>,
    idle_polls: u32,
    /// The topic's partition count (read again on each assignment), and when it was
    /// last asked for while unknown.
    partitions: Option<u32>,
    partitions_asked: Option<Instant>,
}

impl<K, V> KafkaLog<K, V> {
    pub fn new(
        config: &ClientConfig,
        group: &str,
        member: &str,
        topic: &str,
        decode: DecodeFn<K, V>,
        dead_letter: DeadLetterFn,
    ) -> KafkaResult<Self> {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let changes = Arc::new(Mutex::new(VecDeque::new()));
        let consumer: BaseConsumer<LogContext> = config.create_with_context(GroupContext {
            group: group.to_string(),
            rebalancing: LogRebalancing {
                topic: topic.to_string(),
                progress: progress.clone(),
                changes: changes.clone(),
            },
        })?;
        consumer.subscribe(&[topic])?;
        Ok(Self {
            consumer,
            group: group.to_string(),
            member: member.to_string(),
            topic: topic.to_string(),
            decode,
            dead_letter,
            progress,
            changes,
            assigned: Vec::new(),
            paused: false,
            max_records_per_poll: 256,
            commit_interval: Duration::from_secs(1),
            last_commit: Instant::now(),
            committed: HashMap::new(),
            idle_polls: 0,
            partitions: None,
            partitions_asked: None,
        })
    }

    /// Timely worker `worker`'s member of `group`, as the services run it: records it
    /// cannot decode go to `dlq`, written from the worker thread and durable before their
    /// offsets count, and are counted in the counter `dead_letters_metric`. `None` (and
    /// an error logged) when the consumer cannot be created.
    #[allow(clippy::too_many_arguments)]
    pub fn for_worker(
        config: &ClientConfig,
        group: &str,
        worker: usize,
        topic: &str,
        decode: DecodeFn<K, V>,
        dlq: Arc<DeadLetters>,
        rt: tokio::runtime::Handle,
        dead_letters_metric: &'static str,
    ) -> Option<Self> {
        let dead_letter = Box::new(move |d: DeadLetter<'_>| {
            dlq.send_blocking(&rt, d);
            metrics::counter!(dead_letters_metric).increment(1);
        });
        match Self::new(
            config,
            group,
            &worker.to_string(),
            topic,
            decode,
            dead_letter,
        ) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::error!(%group, %topic, error = %e, "creating the Kafka consumer");
                None
            }
        }
    }

    fn assigned_list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in &self.assigned {
            tpl.add_partition(&self.topic, *p as i32);
        }
        tpl
    }

    fn drain_changes(
        changes: &Mutex<VecDeque<Change>>,
        assigned: &mut Vec<u32>,
        committed: &mut HashMap<u32, i64>,
        out: &mut Vec<LogEvent<K, V>>,
    ) {
        let Ok(mut c) = changes.lock() else {
            return;
        };
        for ch in c.drain(..) {
            match ch {
                Change::Assigned(part, next_offset, checkpoint) => {
                    assigned.push(part);
                    out.push(LogEvent::Assigned {
                        part,
                        next_offset,
                        checkpoint,
                    });
                }
                Change::Revoked(part) => {
                    assigned.retain(|p| *p != part);
                    committed.remove(&part);
                    out.push(LogEvent::Revoked { part });
                }
            }
        }
    }
}

impl<K: 'static, V: 'static> EventLog<K, V> for KafkaLog<K, V> {
    fn poll(&mut self, out: &mut Vec<LogEvent<K, V>>) -> bool {
        // Block a little only when the last polls found nothing: a busy source never
        // waits, an idle one does not spin.
        let mut timeout = if self.idle_polls > 2 {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        };
        let mut n = 0;
        while n < self.max_records_per_poll {
            let msg = self.consumer.poll(timeout);
            // Rebalance callbacks ran inside poll: their events go before any record.
            let changes = out.len();
            Self::drain_changes(&self.changes, &mut self.assigned, &mut self.committed, out);
            if out.len() > changes {
                publish_assigned(&self.group, &self.member, self.assigned.len());
            }
            let assigned_now = out[changes..]
                .iter()
                .any(|e| matches!(e, LogEvent::Assigned { .. }));
            if self.paused && assigned_now {
                // Partitions assigned while the sinks are behind wait like the rest.
                if let Err(e) = self.consumer.pause(&self.assigned_list()) {
                    tracing::warn!(topic = %self.topic, error = %e, "pausing newly assigned partitions");
                }
            }
            timeout = Duration::ZERO;
            let Some(msg) = msg else { break };
            let ask_again = self
                .partitions_asked
                .is_none_or(|t| self.partitions.is_none() && t.elapsed() > Duration::from_secs(10));
            if assigned_now || ask_again {
                self.partitions = match partition_count(
                    self.consumer.client(),
                    &self.topic,
                    Duration::from_secs(5),
                ) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %e, "reading the partition count; partitions unchecked until it can be read");
                        None
                    }
                };
                self.partitions_asked = Some(Instant::now());
            }
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error");
                    break;
                }
            };
            n += 1;
            let part = msg.partition() as u32;
            let offset = msg.offset();
            let mut events = Vec::new();
            let payload = msg.payload().unwrap_or_default();
            let placement = self.partitions.map(|partitions| Placement {
                partition: part,
                partitions,
            });
            match (self.decode)(payload, placement, &mut events) {
                Ok(None) => {}
                Ok(Some(cut)) => (self.dead_letter)(DeadLetter {
                    source_topic: &self.topic,
                    partition: msg.partition(),
                    offset,
                    key: msg.key(),
                    payload: &cut.payload,
                    kind: cut.kind,
                    error: &cut.error,
                }),
                Err(error) => {
                    events.clear();
                    (self.dead_letter)(DeadLetter {
                        source_topic: &self.topic,
                        partition: msg.partition(),
                        offset,
                        key: msg.key(),
                        payload,
                        kind: "undecodable",
                        error: &error,
                    });
                }
            }
            out.push(LogEvent::Record {
                part,
                offset,
                events,
            });
        }
        self.idle_polls = if n == 0 {
            self.idle_polls.saturating_add(1)
        } else {
            0
        };
        true
    }

    fn progress(&self) -> Arc<Mutex<Progress>> {
        self.progress.clone()
    }

    fn commit(&mut self, force: bool) {
        if !force && self.last_commit.elapsed() < self.commit_interval {
            return;
        }
        self.last_commit = Instant::now();
        let commits: Vec<_> = match self.progress.lock() {
            Ok(mut p) => p.committable(),
            Err(_) => return,
        };
        let changed: Vec<_> = commits
            .into_iter()
            .filter(|(p, o, _)| *o >= 0 && self.committed.get(p) != Some(o))
            .collect();
        if changed.is_empty() {
            return;
        }
        let list = commit_list(&self.topic, &changed);
        let mode = if force {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match self.consumer.commit(&list, mode) {
            Ok(()) => {
                for (p, o, _) in changed {
                    self.committed.insert(p, o);
                }
            }
            Err(e) => tracing::warn!(topic = %self.topic, error = %e, "offset commit failed"),
        }
    }

    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        let tpl = self.assigned_list();
        let r = if paused {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match r {
            Ok(()) => self.paused = paused,
            Err(e) => tracing::warn!(topic = %self.topic, error = %e, "pausing or resuming"),
        }
    }
}
