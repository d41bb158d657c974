//! The bounded [`EventLog`] of a replay: a worker's share of the partitions, read from
//! the replay's resume offsets to the ends located for its range, outside any consumer
//! group. It commits like the Kafka log — only as far as the sinks acknowledged, with
//! the watermark as checkpoint — but into the replay's state file, so the live groups'
//! offsets are never touched and a rerun resumes exactly.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::ClientConfig;
use weir_runtime::input_checks::Placement;
use weir_runtime::replay::reader::Polled;
use weir_runtime::replay::{BoundedReader, Counters, EventRange, RateLimit, StateFile};

use crate::checkpoint::Checkpoint;
use crate::kafka::DecodeFn;
use crate::operators::source::{EventLog, LogEvent, Progress};

pub struct ReplayLog<K, V> {
    reader: BoundedReader,
    topic: String,
    partitions: u32,
    decode: DecodeFn<K, V>,
    /// Partitions to announce on the first poll: (partition, next offset, checkpoint).
    to_announce: Vec<(u32, i64, Checkpoint)>,
    progress: Arc<Mutex<Progress>>,
    state: StateFile,
    counters: Arc<Counters>,
    rate: Option<RateLimit>,
    commit_interval: Duration,
    last_commit: Instant,
    /// Event times counted as inside the range, for the summary.
    range: Option<EventRange>,
    idle_polls: u32,
}

impl<K, V> ReplayLog<K, V> {
    /// Worker `index` of `workers` reads the partitions `p` with `p % workers == index`
    /// that the state still has records of.
    #[allow(clippy::too_many_arguments)]
    pub fn for_worker(
        config: &ClientConfig,
        state: StateFile,
        index: usize,
        workers: usize,
        partitions: u32,
        decode: DecodeFn<K, V>,
        counters: Arc<Counters>,
        max_rate: Option<u64>,
    ) -> anyhow::Result<Self> {
        let snapshot = state
            .snapshot()
            .ok_or_else(|| anyhow::anyhow!("replay state lock poisoned"))?;
        let mine: Vec<(u32, i64, i64, Checkpoint)> = snapshot
            .partitions
            .iter()
            .filter(|(p, _)| (**p as usize) % workers.max(1) == index)
            .filter(|(_, s)| s.next < s.end)
            .map(|(p, s)| (*p, s.next, s.end, Checkpoint::decode(&s.checkpoint)))
            .collect();
        let parts: Vec<(u32, i64, i64)> = mine.iter().map(|(p, n, e, _)| (*p, *n, *e)).collect();
        let reader = BoundedReader::new(config, &snapshot.topic, &parts)?;
        Ok(Self {
            reader,
            topic: snapshot.topic.clone(),
            partitions,
            decode,
            to_announce: mine.into_iter().map(|(p, n, _, c)| (p, n, c)).collect(),
            progress: Arc::new(Mutex::new(Progress::default())),
            state,
            counters,
            // Each worker takes its share of the rate.
            rate: max_rate.map(|r| RateLimit::new((r / workers.max(1) as u64).max(1))),
            commit_interval: Duration::from_secs(1),
            last_commit: Instant::now(),
            range: None,
            idle_polls: 0,
        })
    }

    /// Counts the samples inside `range` in the summary's `samples_in_range`.
    pub fn counting(mut self, range: EventRange) -> Self {
        self.range = Some(range);
        self
    }
}

impl<K: 'static, V: 'static> EventLog<K, V> for ReplayLog<K, V> {
    fn poll(&mut self, out: &mut Vec<LogEvent<K, V>>) -> bool {
        for (part, next_offset, checkpoint) in self.to_announce.drain(..) {
            out.push(LogEvent::Assigned {
                part,
                next_offset,
                checkpoint,
            });
        }
        if self
            .rate
            .as_mut()
            .is_some_and(|r| r.wait() > Duration::ZERO)
        {
            return true;
        }
        // Wait a little only when the last polls found nothing: a busy replay never
        // waits, one waiting for the broker does not spin.
        let mut timeout = if self.idle_polls > 2 {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        };
        let mut n = 0;
        while n < 256 {
            let m = match self.reader.poll(timeout) {
                Polled::Done => return false,
                Polled::Nothing => break,
                Polled::Record(m) => m,
            };
            timeout = Duration::ZERO;
            n += 1;
            let part = m.partition() as u32;
            let offset = m.offset();
            let mut events = Vec::new();
            let placement = Some(Placement {
                partition: part,
                partitions: self.partitions,
            });
            // What the live groups cut or could not decode is in the dead-letter topic
            // already: counted here, not sent again.
            if (self.decode)(m.payload().unwrap_or_default(), placement, &mut events).is_err() {
                events.clear();
                Counters::add(&self.counters.undecodable, 1);
            }
            Counters::add(&self.counters.records, 1);
            Counters::add(&self.counters.samples_read, events.len() as u64);
            if let Some(r) = self.range {
                let inside = events.iter().filter(|(_, ts, _)| r.contains(*ts)).count();
                Counters::add(&self.counters.samples_kept, inside as u64);
            }
            if let Some(r) = self.rate.as_mut() {
                r.take(events.len());
            }
            out.push(LogEvent::Record {
                part,
                offset,
                events,
            });
            if self
                .rate
                .as_mut()
                .is_some_and(|r| r.wait() > Duration::ZERO)
            {
                break;
            }
        }
        !self.reader.is_done()
    }

    fn progress(&self) -> Arc<Mutex<Progress>> {
        self.progress.clone()
    }

    fn commit(&mut self, force: bool) {
        if !force && self.last_commit.elapsed() < self.commit_interval {
            return;
        }
        self.last_commit = Instant::now();
        let commits = match self.progress.lock() {
            Ok(mut p) => p.committable(),
            Err(_) => return,
        };
        let commits: Vec<_> = commits.into_iter().filter(|(_, o, _)| *o >= 0).collect();
        if commits.is_empty() {
            return;
        }
        let r = self.state.update(|s| {
            for (p, o, c) in &commits {
                if let Some(ps) = s.partitions.get_mut(p) {
                    // Never backwards: a resumed partition starts at `next` already.
                    if *o >= ps.next {
                        ps.next = *o;
                        ps.checkpoint = c.encode();
                    }
                }
            }
        });
        if let Err(e) = r {
            tracing::warn!(topic = %self.topic, error = format!("{e:#}"), "saving replay progress");
        }
    }

    fn set_paused(&mut self, paused: bool) {
        self.reader.set_paused(paused);
    }
}
