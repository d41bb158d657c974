//! The rollup dataflow over in-memory logs, without Kafka or sinks: for the reference
//! tests and the throughput benchmark.
use std::sync::{Arc, Mutex};

use weir_window::memory::MemoryLog;
use weir_window::{EventLog, PeerWatermarks, SourceHandles};

use crate::dataflow::{build, Emitter, Key, TierRow, Timing};
use crate::tiers::Tiers;

/// Records per partition, each a list of `(series key, ts, value)`.
pub type Partitions = Vec<(u32, Vec<Vec<(Key, i64, f64)>>)>;

/// What a run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every row emitted, corrections included, in emission order per worker (only
    /// with `keep_rows`).
    pub rows: Vec<TierRow>,
    /// How many rows were emitted.
    pub rows_out: usize,
    pub late: usize,
    pub suppressed: usize,
}

/// How a run reads its input.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub workers: usize,
    pub records_per_poll: usize,
    /// Keep rows (off for the benchmark, which only counts).
    pub keep_rows: bool,
}

/// Runs over `partitions`, each worker reading the partitions `p % workers == index`.
pub fn run(partitions: &Partitions, tiers: &Tiers, timing: Timing, opts: RunOptions) -> Outcome {
    let parts = Arc::new(partitions.clone());
    let per_poll = opts.records_per_poll.max(1);
    run_logs(
        opts.workers,
        tiers,
        timing,
        opts.keep_rows,
        move |index, peers| {
            let mine = parts
                .iter()
                .filter(|(p, _)| *p as usize % peers == index)
                .map(|(p, recs)| (*p, recs.clone()))
                .collect();
            MemoryLog::new(mine, per_poll)
        },
    )
}

/// Runs on `workers` threads, worker `i` of `n` reading the log `make_log(i, n)`; sinks
/// acknowledge at once (nothing to make durable in memory).
pub fn run_logs<L, F>(
    workers: usize,
    tiers: &Tiers,
    timing: Timing,
    keep_rows: bool,
    make_log: F,
) -> Outcome
where
    L: EventLog<Key, f64>,
    F: Fn(usize, usize) -> L + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let peers = PeerWatermarks::new(workers);
    let (tiers, out) = (tiers.clone(), outcome.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let log = make_log(worker.index(), worker.peers());
        let handles = SourceHandles::new(peers.clone());
        let partition_acked = handles.partition_acked.clone();
        let mut emitter = Emitter::new(tiers.allowed_lateness_ms);
        let out = out.clone();
        worker.dataflow::<weir_window::Time, _, _>(|scope| {
            build(
                scope,
                log,
                &tiers,
                timing,
                handles,
                move |items, _frontier| {
                    let e = emitter.absorb(items);
                    e.acknowledge(&partition_acked);
                    if let Ok(mut o) = out.lock() {
                        o.rows_out += e.rows.len();
                        o.late += e.late.len();
                        o.suppressed += e.suppressed;
                        if keep_rows {
                            o.rows.extend(e.rows);
                        }
                    }
                },
            );
        });
        while worker.step_or_park(None) {}
    })
    .expect("timely workers start")
    .join();
    let o = std::mem::take(&mut *outcome.lock().expect("no worker panicked"));
    o
}
