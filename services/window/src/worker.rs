//! A timely worker fed by the Kafka source, as a service runs it: stepped until told to
//! stop, then drained — reading paused, the sinks given time to write what was handed
//! to them, offsets committed as far as that allows, and the group left.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::worker::Worker;

use crate::operators::source::{PeerWatermarks, SourceHandles};

/// What a worker shares with its sink task and the process.
#[derive(Clone)]
pub struct WorkerLink {
    pub handles: SourceHandles,
    /// Batches this worker handed to the sink task, and how many the task finished.
    pub sent: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl WorkerLink {
    pub fn new(peers: Arc<PeerWatermarks>) -> Self {
        Self {
            handles: SourceHandles::new(peers),
            sent: Arc::new(AtomicU64::new(0)),
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One more batch is on its way to the sink task.
    pub fn handed_over(&self) {
        self.sent.fetch_add(1, Ordering::AcqRel);
    }

    /// The sink task made `n` batches durable.
    pub fn written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::AcqRel);
    }
}

/// Steps `worker` until `stop`, pausing reading while `behind()` and publishing the
/// worker's watermark to `watermark_gauge` once a second; then drains (30 s at most).
pub fn run_then_drain(
    worker: &mut Worker,
    link: &WorkerLink,
    stop: &AtomicBool,
    behind: impl Fn() -> bool,
    watermark_gauge: metrics::Gauge,
) {
    let mut last_gauge = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        worker.step_or_park(Some(Duration::from_millis(10)));
        link.handles.paused.store(behind(), Ordering::Relaxed);
        if last_gauge.elapsed() > Duration::from_secs(1) {
            last_gauge = Instant::now();
            let wm = link.handles.watermark.load(Ordering::Relaxed);
            if wm != i64::MIN {
                watermark_gauge.set(wm as f64 / 1000.0);
            }
        }
    }
    link.handles.paused.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while link.written.load(Ordering::Acquire) < link.sent.load(Ordering::Acquire)
        && Instant::now() < deadline
    {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    link.handles.commit_now.store(true, Ordering::Release);
    while link.handles.commit_now.load(Ordering::Acquire) && Instant::now() < deadline {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    tracing::info!(worker = worker.index(), "worker drained and committed");
    // The source never finishes on its own (its capability is the watermark): drop the
    // dataflow, which closes the consumer and leaves the group, rather than release the
    // frontier and fire everything open half full.
    for d in worker.installed_dataflows() {
        worker.drop_dataflow(d);
    }
}
