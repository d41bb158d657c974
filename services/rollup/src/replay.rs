//! `weir replay --into rollup`: recomputes the rows of every tier whose windows lie
//! wholly inside a range, from the records that hold the range, beside the live rollup.
//!
//! The dataflow and the writer are the live rollup's; what differs is the source (a
//! bounded [`ReplayLog`], committing into the replay's state file, never into the live
//! group), the rows kept (windows cut by the range's edges are left alone, so a partial
//! window never replaces a complete row), and the rows' version: the replay's
//! generation, so a recomputed row replaces the old one even when it holds fewer samples.
//! The rollup topics are written only when asked; late samples are counted, not sent
//! again.
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_runtime::kafka::reader_config;
use weir_runtime::replay::{Counters, EventRange, StateFile};
use weir_runtime::role::RoleOps;
use weir_runtime::Topology;
use weir_window::replay::ReplayLog;
use weir_window::{PoolConfig, WorkerPool};

use crate::service::{
    decode_samples, install, wait_for_schema, write_loop, Flush, Mode, Plan, Sinks,
};
use crate::sink::clickhouse::ClickHouseSink;
use crate::sink::topics::TopicSink;
use crate::tiers::Tiers;

/// A rollup replay's settings.
pub struct RollupReplay {
    pub range: EventRange,
    pub state: StateFile,
    pub partitions: u32,
    pub counters: Arc<Counters>,
    pub max_rate: Option<u64>,
    /// Also write the recomputed rows to the rollup topics.
    pub to_topics: bool,
}

/// Runs the replay until its log is exhausted and every row is written (`Ok(true)`),
/// or until `interrupt` (`Ok(false)`: progress is saved, a rerun resumes).
pub async fn run(
    topology: Topology,
    r: RollupReplay,
    ops: &RoleOps,
    interrupt: CancellationToken,
) -> anyhow::Result<bool> {
    let plan = Plan::of(&topology)?;
    let cfg = plan.cfg.clone();
    let generation = r
        .state
        .snapshot()
        .map(|s| s.generation)
        .ok_or_else(|| anyhow::anyhow!("replay state lock poisoned"))?;
    let clickhouse = Arc::new(
        ClickHouseSink::new(&plan.clickhouse, cfg.tiers.clone())?.with_generation(generation),
    );
    if !wait_for_schema(&clickhouse, &ops.health, cfg.retry_max, &interrupt).await {
        return Ok(false);
    }
    let topics = if r.to_topics {
        Some(Arc::new(TopicSink::new(
            &topology.kafka,
            &plan.tier_topics,
            (&cfg.late_topic, &plan.late_spec),
        )?))
    } else {
        None
    };
    ops.health.set_ready();

    let pool = WorkerPool::new(PoolConfig {
        workers: cfg.workers,
        max_pending: cfg.max_pending_rows,
        watermark_gauge: "weir_replay_watermark_seconds",
        bounded: true,
    });
    let (tx, rx) = mpsc::unbounded_channel::<Flush>();
    let sinks = Sinks {
        clickhouse,
        topics,
        health: ops.health.clone(),
        counters: Some(r.counters.clone()),
    };
    let writer = tokio::spawn(write_loop(rx, pool.handle(), sinks, cfg.clone()));

    let reader = reader_config(&topology.kafka, &format!("weir-replay-{}", cfg.group));
    let decode = decode_samples(&topology, &cfg);
    let (tiers, timing) = (Tiers::from_config(&cfg), plan.timing());
    let workers = cfg.workers;
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed2 = failed.clone();
    let (state, counters, max_rate, partitions, range) = (
        r.state.clone(),
        r.counters.clone(),
        r.max_rate,
        r.partitions,
        r.range,
    );
    let running = pool.start(move |worker, handoff| {
        let log = ReplayLog::for_worker(
            &reader,
            state.clone(),
            handoff.index,
            workers,
            partitions,
            decode(),
            counters.clone(),
            max_rate,
        );
        match log.map(|l| l.counting(range)) {
            Ok(log) => {
                install(
                    worker,
                    handoff,
                    log,
                    &tiers,
                    timing,
                    Mode::Replay(range),
                    tx.clone(),
                );
                true
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "creating the replay reader");
                failed2.store(true, std::sync::atomic::Ordering::Relaxed);
                false
            }
        }
    })?;
    running.finish(&interrupt).await?;
    // Every sender is gone with the workers: the writer ends once it wrote the rest.
    let _ = writer.await;
    if failed.load(std::sync::atomic::Ordering::Relaxed) {
        anyhow::bail!("a replay reader could not be created (see the log); progress is saved, rerun to resume");
    }
    Ok(!interrupt.is_cancelled())
}
