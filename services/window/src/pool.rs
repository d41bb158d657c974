//! The timely workers of a consumer role, owned in one place: the links between each
//! worker and the role's sink task, the count of results handed over and not yet
//! written (what pauses reading when the sinks fall behind), the thread the workers run
//! on, and the order in which they stop.
//!
//! A role supplies only its dataflow: [`WorkerPool::start`] calls `build` on every
//! worker with a [`Handoff`] to pass results on; the sink task reports what it made
//! durable through [`PoolHandle::written`]. A live role runs until told to stop, then
//! drains ([`run_then_drain`]); a bounded one (replay) runs until its source is exhausted
//! and everything handed over was written ([`run_to_end`]).
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::worker::Worker;

use crate::operators::source::PeerWatermarks;
use crate::worker::{run_then_drain, WorkerLink};

/// What the sink task needs to acknowledge a worker's results.
#[derive(Clone)]
pub struct PoolHandle {
    pub links: Vec<WorkerLink>,
    pending: Arc<AtomicUsize>,
}

impl PoolHandle {
    /// The sink task made `batches` batches of `worker`, holding `items` items, durable.
    pub fn written(&self, worker: usize, batches: u64, items: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(items))
            });
        if let Some(l) = self.links.get(worker) {
            l.written(batches);
        }
    }

    /// Items handed over and not yet written, over all workers.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// A worker's side of the pool, given to the role's `build`.
#[derive(Clone)]
pub struct Handoff {
    pub index: usize,
    pub link: WorkerLink,
    pending: Arc<AtomicUsize>,
}

impl Handoff {
    /// One batch of `items` items is on its way to the sink task.
    pub fn handed_over(&self, items: usize) {
        self.pending.fetch_add(items, Ordering::AcqRel);
        self.link.handed_over();
    }
}

/// How the workers run.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    /// Reading pauses while more items than this are handed over and not written.
    pub max_pending: usize,
    /// The gauge each worker's watermark (seconds) is published to, labelled `worker`.
    pub watermark_gauge: &'static str,
    /// The source ends (a replay): run until the dataflow is complete and written.
    pub bounded: bool,
}

/// The pool before its workers run: hand [`WorkerPool::handle`] to the sink task first.
pub struct WorkerPool {
    cfg: PoolConfig,
    handle: PoolHandle,
    stop: Arc<AtomicBool>,
}

/// Running workers.
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl WorkerPool {
    pub fn new(cfg: PoolConfig) -> Self {
        let peers = PeerWatermarks::new(cfg.workers);
        let links = (0..cfg.workers)
            .map(|_| WorkerLink::new(peers.clone()))
            .collect();
        Self {
            cfg,
            handle: PoolHandle {
                links,
                pending: Arc::new(AtomicUsize::new(0)),
            },
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Starts the workers on a thread of their own. `build` installs a worker's
    /// dataflow; it returns `false` when the worker cannot run (its consumer could not
    /// be created, already logged), and that worker ends.
    pub fn start<F>(self, build: F) -> anyhow::Result<Running>
    where
        F: Fn(&mut Worker, Handoff) -> bool + Send + Sync + 'static,
    {
        let Self { cfg, handle, stop } = self;
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("timely".into())
            .spawn(move || {
                timely::execute(timely::Config::process(cfg.workers), move |worker| {
                    let index = worker.index();
                    let link = handle.links[index].clone();
                    let handoff = Handoff {
                        index,
                        link: link.clone(),
                        pending: handle.pending.clone(),
                    };
                    if !build(worker, handoff) {
                        return;
                    }
                    let gauge = metrics::gauge!(cfg.watermark_gauge, "worker" => index.to_string());
                    let pending = handle.pending.clone();
                    let max_pending = cfg.max_pending;
                    let behind = || pending.load(Ordering::Relaxed) > max_pending;
                    if cfg.bounded {
                        run_to_end(worker, &link, &stop2, behind);
                    } else {
                        run_then_drain(worker, &link, &stop2, behind, gauge);
                    }
                })
                .map(|guards| drop(guards.join()))
                .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))
            })?;
        Ok(Running { stop, thread })
    }
}

impl Running {
    /// Stops reading, drains, commits and waits for the workers.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits for the workers to end on their own (a bounded pool), or to be stopped
    /// through `stop` (cancel it to interrupt).
    pub async fn finish(
        self,
        interrupt: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        let join = self.join();
        tokio::pin!(join);
        tokio::select! {
            r = &mut join => r,
            _ = interrupt.cancelled() => {
                stop.store(true, Ordering::Relaxed);
                join.await
            }
        }
    }

    async fn join(self) -> anyhow::Result<()> {
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(r)) => r,
            _ => Err(anyhow::anyhow!("a timely worker panicked")),
        }
    }
}

/// Steps a worker over a bounded source until its dataflows are complete (every window
/// fired) and the sink task wrote all it was handed, or until `stop` (then it only waits
/// for what was handed over). The source commits progress as it goes; what is not yet
/// committed is read again by the next run.
pub fn run_to_end(
    worker: &mut Worker,
    link: &WorkerLink,
    stop: &AtomicBool,
    behind: impl Fn() -> bool,
) {
    while !stop.load(Ordering::Relaxed) {
        let more = worker.step_or_park(Some(Duration::from_millis(10)));
        link.handles.paused.store(behind(), Ordering::Relaxed);
        if !more {
            break;
        }
    }
    let interrupted = stop.load(Ordering::Relaxed);
    if interrupted {
        link.handles.paused.store(true, Ordering::Relaxed);
    }
    // Written before the workers return: the caller's summary counts them.
    let deadline = interrupted.then(|| Instant::now() + Duration::from_secs(30));
    while link.written.load(Ordering::Acquire) < link.sent.load(Ordering::Acquire)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    if interrupted {
        link.handles.commit_now.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.handles.commit_now.load(Ordering::Acquire) && Instant::now() < deadline {
            worker.step_or_park(Some(Duration::from_millis(10)));
        }
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
    }
}
