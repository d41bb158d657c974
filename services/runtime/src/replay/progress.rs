//! Progress of a replay: a bar with rate and ETA when stderr is a terminal, one JSON
//! object per line on stderr otherwise (for logs and scripts).
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// What a replay counted so far in this run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records to read in this run, and read.
    pub total_records: AtomicU64,
    pub records: AtomicU64,
    /// Samples read, and those inside the range (and the selector) that were kept.
    pub samples_read: AtomicU64,
    pub samples_kept: AtomicU64,
    /// What the target wrote: rows, samples, alerts or records.
    pub written: AtomicU64,
    /// Records that could not be decoded (the live groups dead-lettered them already).
    pub undecodable: AtomicU64,
    /// Series the target refused as unwritable (left out, logged).
    pub refused: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn json(&self, written_name: &str) -> serde_json::Value {
        serde_json::json!({
            "records": Self::get(&self.records),
            "records_total": Self::get(&self.total_records),
            "samples_read": Self::get(&self.samples_read),
            "samples_in_range": Self::get(&self.samples_kept),
            written_name: Self::get(&self.written),
            "undecodable_records": Self::get(&self.undecodable),
            "refused_series": Self::get(&self.refused),
        })
    }
}

/// Prints progress until stopped.
pub struct Reporter {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub fn start(counters: Arc<Counters>, written_name: &'static str) -> Self {
        Self::counting(counters, written_name, "records")
    }

    /// Progress counted in `unit` (`records` read, or `bytes` of an import file).
    pub fn counting(
        counters: Arc<Counters>,
        written_name: &'static str,
        unit: &'static str,
    ) -> Self {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bar = std::io::stderr().is_terminal().then(|| {
                let b = indicatif::ProgressBar::new(Counters::get(&counters.total_records));
                b.set_style(
                    indicatif::ProgressStyle::with_template(&format!(
                        "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}  {{msg}}"
                    ))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            loop {
                let done = tokio::select! {
                    _ = s.cancelled() => true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                };
                let records = Counters::get(&counters.records);
                let total = Counters::get(&counters.total_records);
                let kept = Counters::get(&counters.samples_kept);
                let written = Counters::get(&counters.written);
                match &bar {
                    Some(b) => {
                        b.set_length(total);
                        b.set_position(records);
                        b.set_message(format!("{kept} samples in range, {written} {written_name}"));
                    }
                    None => {
                        let secs = started.elapsed().as_secs_f64().max(1e-3);
                        let rate = records as f64 / secs;
                        let eta =
                            (rate > 0.0).then(|| (total.saturating_sub(records)) as f64 / rate);
                        let mut line = counters.json(written_name);
                        line["progress"] = serde_json::json!(if total == 0 {
                            1.0
                        } else {
                            records as f64 / total as f64
                        });
                        line["records_per_second"] = serde_json::json!(rate.round());
                        line["eta_seconds"] = serde_json::json!(eta.map(|e| e.round()));
                        eprintln!("{line}");
                    }
                }
                if done {
                    if let Some(b) = &bar {
                        b.finish();
                    }
                    break;
                }
            }
        });
        Self { stop, task }
    }

    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
