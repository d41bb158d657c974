//! The source: reads a partitioned log, stamps each event with its partition's
//! watermark, and holds its timely capability at the worker's watermark, so the frontier
//! downstream *is* the watermark. It also tracks which offsets may be committed and
//! commits them, with the watermark, once the sinks acknowledged the windows they fed.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};

use super::{to_time, Time};
use crate::checkpoint::{Checkpoint, OffsetTracker};
use crate::event::{Event, Item};
use crate::watermark::Watermarks;

/// What a log hands the source.
#[derive(Debug)]
pub enum LogEvent<K, V> {
    /// The worker now reads `part` from `next_offset`, with the checkpoint committed there.
    Assigned {
        part: u32,
        next_offset: i64,
        checkpoint: Checkpoint,
    },
    /// The partition moved to another member; offsets were committed before it went.
    Revoked { part: u32 },
    /// One record's events.
    Record {
        part: u32,
        offset: i64,
        events: Vec<(K, i64, V)>,
    },
}

/// Commit bookkeeping of the partitions a worker reads, shared with the log so it can
/// commit on revocation (inside the consumer's rebalance callback).
#[derive(Debug, Default)]
pub struct Progress {
    pub trackers: HashMap<u32, OffsetTracker>,
    /// Per partition, what the sinks acknowledged: every window of the partition whose
    /// end plus lateness is at or below it was emitted for good and is durable.
    pub acked: HashMap<u32, i64>,
}

impl Progress {
    /// The offset and checkpoint that may be committed for each partition now.
    pub fn committable(&mut self) -> Vec<(u32, i64, Checkpoint)> {
        let acked = &self.acked;
        self.trackers
            .iter_mut()
            .filter_map(|(p, t)| {
                let a = acked.get(p)?;
                let (o, c) = t.committable(*a);
                Some((*p, o, c))
            })
            .collect()
    }
}

/// A partitioned, replayable log of keyed events: Kafka, or a vector in tests and
/// benchmarks.
pub trait EventLog<K, V>: 'static {
    /// Appends what is available now; `false` once a bounded log is exhausted.
    fn poll(&mut self, out: &mut Vec<LogEvent<K, V>>) -> bool;
    /// The bookkeeping this log commits from.
    fn progress(&self) -> Arc<std::sync::Mutex<Progress>>;
    /// Commits what `progress` allows; called often, rate-limits itself.
    fn commit(&mut self, force: bool);
    /// Stops or resumes reading (sinks behind).
    fn set_paused(&mut self, _paused: bool) {}
}

/// Watermark settings of a source.
#[derive(Clone)]
pub struct SourceConfig {
    pub out_of_orderness: Duration,
    pub idle_timeout: Duration,
    /// Event times past the consumer's clock plus this are out of bounds (see
    /// [`InputChecks`](weir_runtime::input_checks::InputChecks)): a restored checkpoint beyond it is
    /// forgotten.
    pub max_future: Duration,
    /// The time at which every window an event at `ts` contributes to is final (end of
    /// the coarsest window plus allowed lateness): until then its record is not committed.
    pub release_at: Rc<dyn Fn(i64) -> i64>,
}

/// Watermarks of the workers of one process: a worker without active partitions follows
/// the others instead of holding the frontier back.
#[derive(Debug)]
pub struct PeerWatermarks {
    marks: Vec<AtomicI64>,
}

impl PeerWatermarks {
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self {
            marks: (0..workers).map(|_| AtomicI64::new(i64::MIN)).collect(),
        })
    }

    fn publish(&self, worker: usize, wm: i64) {
        if let Some(m) = self.marks.get(worker) {
            m.store(wm, Ordering::Relaxed);
        }
    }

    fn highest_other(&self, worker: usize) -> Option<i64> {
        self.marks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != worker)
            .map(|(_, m)| m.load(Ordering::Relaxed))
            .filter(|m| *m != i64::MIN)
            .max()
    }
}

/// Shared handles between a worker's source and its sinks.
#[derive(Clone)]
pub struct SourceHandles {
    /// Per partition, the partition watermark whose final results the sinks made
    /// durable (a [`crate::Item::Watermark`] that reached the sinks and was written).
    pub partition_acked: Arc<std::sync::Mutex<HashMap<u32, i64>>>,
    /// Set to pause reading.
    pub paused: Arc<std::sync::atomic::AtomicBool>,
    /// The worker's current watermark, for metrics and tests.
    pub watermark: Arc<AtomicI64>,
    /// Set to commit now, synchronously (shutdown); the source clears it when done.
    pub commit_now: Arc<std::sync::atomic::AtomicBool>,
    pub peers: Arc<PeerWatermarks>,
}

impl SourceHandles {
    pub fn new(peers: Arc<PeerWatermarks>) -> Self {
        Self {
            partition_acked: Arc::new(std::sync::Mutex::new(HashMap::new())),
            paused: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            watermark: Arc::new(AtomicI64::new(i64::MIN)),
            commit_now: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            peers,
        }
    }
}

/// Builds the source operator over `log`.
pub fn log_source<'s, K, V, O, L>(
    scope: Scope<'s, Time>,
    name: &str,
    mut log: L,
    cfg: SourceConfig,
    handles: SourceHandles,
) -> Stream<'s, Time, Vec<Item<K, V, O>>>
where
    K: Clone + 'static,
    V: Clone + 'static,
    O: Clone + 'static,
    L: EventLog<K, V>,
{
    let worker = scope.index();
    source::<_, CapacityContainerBuilder<Vec<Item<K, V, O>>>, _, _>(
        scope,
        name,
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            let mut marks = Watermarks::new(cfg.out_of_orderness, cfg.idle_timeout);
            let max_future_ms = cfg.max_future.as_millis().min(i64::MAX as u128 / 2) as i64;
            let progress = log.progress();
            let mut polled = Vec::new();
            let paused = Rc::new(RefCell::new(false));
            // Partition watermarks last announced downstream.
            let mut announced: HashMap<u32, i64> = HashMap::new();
            let mut touched: Vec<u32> = Vec::new();
            move |output| {
                let now = Instant::now();
                let open = log.poll(&mut polled);
                if let Some(c) = cap.as_ref() {
                    let mut session = output.session(c);
                    let mut prog = progress.lock().ok();
                    for ev in polled.drain(..) {
                        match ev {
                            LogEvent::Assigned {
                                part,
                                next_offset,
                                checkpoint,
                            } => {
                                let latest = weir_runtime::input_checks::wall_clock_ms()
                                    .saturating_add(max_future_ms);
                                let restored = checkpoint.bounded(latest);
                                if restored != checkpoint {
                                    tracing::warn!(part, ?checkpoint, "restored event time is past the consumer's clock plus max_sample_future; forgotten");
                                }
                                let checkpoint = restored;
                                marks.add_partition(part, checkpoint.max_event, now);
                                if let Some(p) = prog.as_mut() {
                                    p.trackers.insert(
                                        part,
                                        OffsetTracker::new(next_offset, checkpoint.max_event),
                                    );
                                    // What was durable when the checkpoint was taken still is.
                                    match checkpoint.watermark {
                                        Some(w) => p.acked.insert(part, w),
                                        None => p.acked.remove(&part),
                                    };
                                }
                                session.give(Item::Assigned(part, checkpoint));
                            }
                            LogEvent::Revoked { part } => {
                                marks.remove_partition(part);
                                announced.remove(&part);
                                if let Ok(mut a) = handles.partition_acked.lock() {
                                    a.remove(&part);
                                }
                                if let Some(p) = prog.as_mut() {
                                    p.trackers.remove(&part);
                                    p.acked.remove(&part);
                                }
                                session.give(Item::Revoked(part));
                            }
                            LogEvent::Record {
                                part,
                                offset,
                                events,
                            } => {
                                let pw = marks.partition_watermark(part);
                                let mut release: Option<i64> = None;
                                let mut max_ts: Option<i64> = None;
                                for (key, ts, value) in events {
                                    let r = (cfg.release_at)(ts);
                                    release = Some(release.map_or(r, |x| x.max(r)));
                                    max_ts = Some(max_ts.map_or(ts, |x| x.max(ts)));
                                    session.give(Item::Event(Event {
                                        key,
                                        part,
                                        ts,
                                        value,
                                        part_watermark: pw,
                                    }));
                                }
                                match max_ts {
                                    Some(m) => marks.observe(part, m, now),
                                    None => marks.touch(part, now),
                                }
                                touched.push(part);
                                if let Some(p) = prog.as_mut() {
                                    if let Some(t) = p.trackers.get_mut(&part) {
                                        t.record(offset, release, max_ts);
                                    }
                                }
                            }
                        }
                    }
                    // Each partition's own watermark, after the records it gave: what
                    // makes its windows final.
                    touched.sort_unstable();
                    touched.dedup();
                    for part in touched.drain(..) {
                        if let Some(wm) = marks.partition_watermark(part) {
                            if announced.get(&part).is_none_or(|a| *a < wm) {
                                announced.insert(part, wm);
                                session.give(Item::Watermark(part, wm));
                            }
                        }
                    }
                    if let (Some(p), Ok(acked)) = (prog.as_mut(), handles.partition_acked.lock()) {
                        // Only partitions still held: a revoked one is someone else's.
                        for (part, a) in acked.iter() {
                            if p.trackers.contains_key(part) {
                                let e = p.acked.entry(*part).or_insert(*a);
                                *e = (*e).max(*a);
                            }
                        }
                    }
                }
                // Hold the capability at the watermark.
                let wm = if marks.all_idle(now) {
                    handles.peers.highest_other(worker).or(marks.current(now))
                } else {
                    marks.current(now)
                };
                if let (Some(c), Some(wm)) = (cap.as_mut(), wm) {
                    let t = to_time(wm);
                    if t > *c.time() {
                        c.downgrade(&t);
                    }
                    handles.watermark.store(wm, Ordering::Relaxed);
                    handles.peers.publish(worker, wm);
                }
                let want_pause = handles.paused.load(Ordering::Relaxed);
                if want_pause != *paused.borrow() {
                    log.set_paused(want_pause);
                    *paused.borrow_mut() = want_pause;
                }
                if handles.commit_now.load(Ordering::Acquire) {
                    log.commit(true);
                    handles.commit_now.store(false, Ordering::Release);
                } else {
                    log.commit(!open);
                }
                if open {
                    activator.activate();
                } else {
                    // A bounded log is done: release the frontier so every window fires.
                    cap = None;
                }
            }
        },
    )
}
