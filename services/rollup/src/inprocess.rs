//! The rollup dataflow over an in-memory log, without Kafka or sinks: for the reference
//! tests and the throughput benchmark.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use weir_window::memory::MemoryLog;
use weir_window::{Checkpoint, PeerWatermarks, SourceHandles};

use crate::dataflow::{build, Emitter, Key, TierRow, Timing};
use crate::tiers::Tiers;

/// Records per partition, each a list of `(series key, ts, value)`.
pub type Partitions = Vec<(u32, Vec<Vec<(Key, i64, f64)>>)>;

/// What a run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every row emitted, corrections included, in emission order per worker.
    pub rows: Vec<TierRow>,
    pub late: usize,
    pub suppressed: usize,
    /// The last commit per partition.
    pub commits: HashMap<u32, (i64, Checkpoint)>,
}

/// How a run reads its input.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub workers: usize,
    pub records_per_poll: usize,
    /// Resume from these commits (a restart) instead of the beginning.
    pub resume: HashMap<u32, (i64, Checkpoint)>,
    /// Keep rows (off for the benchmark, which only counts).
    pub keep_rows: bool,
}

pub fn run(partitions: &Partitions, tiers: &Tiers, timing: Timing, opts: RunOptions) -> Outcome {
    let workers = opts.workers.max(1);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let rows_emitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peers = PeerWatermarks::new(workers);
    let parts = Arc::new(partitions.clone());
    let (tiers, opts2, out2, peers2) =
        (tiers.clone(), opts.clone(), outcome.clone(), peers.clone());
    let count = rows_emitted.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers_n = worker.peers();
        let mine: Vec<_> = parts
            .iter()
            .filter(|(p, _)| *p as usize % peers_n == index)
            .map(|(p, recs)| (*p, recs.clone()))
            .collect();
        let log = MemoryLog::new(mine, opts2.records_per_poll.max(1)).resume_from(&opts2.resume);
        let committed = log.committed.clone();
        let handles = SourceHandles::new(peers2.clone());
        let acked = handles.acked.clone();
        let partition_acked = handles.partition_acked.clone();
        let mut emitter = Emitter::new(tiers.allowed_lateness_ms);
        let out = out2.clone();
        let keep = opts2.keep_rows;
        let count = count.clone();
        worker.dataflow::<weir_window::Time, _, _>(|scope| {
            build(
                scope,
                log,
                &tiers,
                timing,
                handles,
                move |items, frontier| {
                    let e = emitter.absorb(items);
                    // Nothing to make durable in memory: acknowledge at once.
                    e.acknowledge(&partition_acked);
                    count.fetch_add(e.rows.len(), Ordering::Relaxed);
                    if keep || !e.late.is_empty() || e.suppressed > 0 {
                        if let Ok(mut o) = out.lock() {
                            o.late += e.late.len();
                            o.suppressed += e.suppressed;
                            if keep {
                                o.rows.extend(e.rows);
                            }
                        }
                    }
                    // Nothing to make durable in memory: acknowledge at once.
                    if frontier != i64::MAX {
                        acked.store(frontier, Ordering::Relaxed);
                    }
                },
            );
        });
        while worker.step_or_park(None) {}
        committed.lock().map(|c| c.clone()).unwrap_or_default()
    })
    .expect("timely workers start");
    let mut commits = HashMap::new();
    for c in guards.join().into_iter().flatten() {
        commits.extend(c);
    }
    let mut o = std::mem::take(&mut *outcome.lock().expect("no worker panicked"));
    o.commits = commits;
    if !opts.keep_rows {
        o.rows.clear();
    }
    o
}
