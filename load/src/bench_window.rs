//! Window-engine throughput in process: the rollup dataflow (1m, 5m from 1m, 1h from 5m)
//! over synthetic records, no Kafka and no sinks. Samples are generated as the source
//! polls (generation is part of the measured cost, decoding is not).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use weir_rollup::dataflow::{Key, Timing};
use weir_rollup::inprocess::run_logs;
use weir_rollup::tiers::Tiers;
use weir_window::{EventLog, LogEvent, Progress};

#[derive(Debug, Args, Clone)]
pub struct WindowBenchArgs {
    /// Distinct series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Samples per series (one every `--interval-ms` of event time).
    #[arg(long, default_value_t = 400)]
    samples_per_series: usize,
    #[arg(long, default_value_t = 10_000)]
    interval_ms: i64,
    /// Partitions the series are spread over.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Samples per record (a gateway request's share of one partition).
    #[arg(long, default_value_t = 1000)]
    record_samples: usize,
    /// Timely workers (threads); the figure is per CPU-second, whatever this is.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Runs; each prints its figure, then the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Synthetic partitions: each poll hands out one record per partition.
struct SyntheticLog {
    parts: Vec<(u32, Vec<Key>)>,
    /// Per partition: samples handed out so far.
    done: Vec<usize>,
    per_series: usize,
    interval_ms: i64,
    record_samples: usize,
    t0: i64,
    assigned: bool,
    progress: Arc<Mutex<Progress>>,
}

impl EventLog<Key, f64> for SyntheticLog {
    fn poll(&mut self, out: &mut Vec<LogEvent<Key, f64>>) -> bool {
        if !self.assigned {
            self.assigned = true;
            for (p, _) in &self.parts {
                out.push(LogEvent::Assigned {
                    part: *p,
                    next_offset: 0,
                    checkpoint: Default::default(),
                });
            }
        }
        let mut open = false;
        for (i, (p, keys)) in self.parts.iter().enumerate() {
            let total = keys.len() * self.per_series;
            let from = self.done[i];
            let to = (from + self.record_samples).min(total);
            if from == to {
                continue;
            }
            let mut events = Vec::with_capacity(to - from);
            for n in from..to {
                let round = n / keys.len();
                let k = &keys[n % keys.len()];
                let ts = self.t0 + round as i64 * self.interval_ms;
                // A counter that resets every 100 samples.
                events.push((k.clone(), ts, (round % 100) as f64 * 3.0 + (n % 7) as f64));
            }
            out.push(LogEvent::Record {
                part: *p,
                offset: (from / self.record_samples) as i64,
                events,
            });
            self.done[i] = to;
            open |= to < total;
        }
        open
    }

    fn progress(&self) -> Arc<Mutex<Progress>> {
        self.progress.clone()
    }

    fn commit(&mut self, _force: bool) {
        if let Ok(mut p) = self.progress.lock() {
            p.committable();
        }
    }
}

fn one_run(a: &WindowBenchArgs) -> anyhow::Result<(f64, f64, usize, usize)> {
    let tiers = Tiers {
        names: vec!["1m".into(), "5m".into(), "1h".into()],
        sizes_ms: vec![60_000, 300_000, 3_600_000],
        allowed_lateness_ms: 60_000,
    };
    let timing = Timing {
        out_of_orderness: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        max_future: Duration::from_secs(600),
    };
    let args = a.clone();
    let cpu0 = crate::proc_stat::cpu_seconds(std::process::id())?;
    let wall0 = Instant::now();
    let out = run_logs(a.workers, &tiers, timing, false, move |index, peers_n| {
        let parts: Vec<(u32, Vec<Key>)> = (0..args.partitions)
            .filter(|p| *p as usize % peers_n == index)
            .map(|p| {
                let keys = (0..args.series)
                    .filter(|s| (*s as u32) % args.partitions == p)
                    .map(|s| {
                        Key::from(format!(
                            "bench_value{{device=\"d{s:06}\",site=\"s{}\"}}",
                            s % 50
                        ))
                    })
                    .collect();
                (p, keys)
            })
            .collect();
        let n = parts.len();
        SyntheticLog {
            parts,
            done: vec![0; n],
            per_series: args.samples_per_series,
            interval_ms: args.interval_ms,
            record_samples: args.record_samples,
            t0: 1_700_000_000_000 / 3_600_000 * 3_600_000,
            assigned: false,
            progress: Arc::new(Mutex::new(Progress::default())),
        }
    });
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = crate::proc_stat::cpu_seconds(std::process::id())? - cpu0;
    let samples = a.series * a.samples_per_series;
    Ok((cpu, wall, samples, out.rows_out))
}

pub fn run(a: WindowBenchArgs) -> anyhow::Result<()> {
    println!(
        "window engine in process: {} series over {} partitions, {} samples each ({} ms apart, {:.1} h of event time), records of {} samples, tiers 1m -> 5m -> 1h, {} worker(s)",
        a.series,
        a.partitions,
        a.samples_per_series,
        a.interval_ms,
        (a.samples_per_series as i64 * a.interval_ms) as f64 / 3.6e6,
        a.record_samples,
        a.workers
    );
    let mut figures = Vec::new();
    for i in 0..a.runs {
        let (cpu, wall, samples, rows) = one_run(&a)?;
        let per_cpu = samples as f64 / cpu;
        println!(
            "run {}: {samples} samples, {rows} rows, {cpu:.2} CPU-s, {wall:.2} s wall: {:.2} M samples per CPU-second ({:.2} M/s wall)",
            i + 1,
            per_cpu / 1e6,
            samples as f64 / wall / 1e6
        );
        figures.push(per_cpu);
    }
    figures.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "median: {:.2} M samples per CPU-second (process CPU time from /proc, generation included, no Kafka)",
        figures[figures.len() / 2] / 1e6
    );
    Ok(())
}
