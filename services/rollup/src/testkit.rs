//! Test support shared by the in-process and end-to-end rollup tests: a generated data
//! set with the awkward cases, and the plain batch computation every row must equal.
use std::collections::BTreeMap;

use weir_contract::partitioner::first_key_in_partition;

use crate::aggregate::{counter_step, QUANTILES, SKETCH_RELATIVE_ERROR};

/// One record: `(series key, ts, value)` samples, all of one partition.
pub type Record = Vec<(String, i64, f64)>;

#[derive(Debug, Clone, Copy)]
pub struct DataSet {
    pub partitions: u32,
    pub series_per_partition: usize,
    /// Scrapes per partition, one record each, `step_ms` apart in event time.
    pub scrapes: usize,
    pub step_ms: i64,
    /// Aligned to the largest tier.
    pub t0: i64,
    /// The last partition falls silent after this many scrapes (an idle partition).
    pub idle_after: usize,
    pub seed: u64,
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

impl DataSet {
    /// Records per partition in log order. Some records swap with a neighbour (out of
    /// order within the bound), some come 50 s late (within the lateness), one in a
    /// hundred 3 minutes late (beyond it), the last scrape of every 5 minutes 70 s late
    /// (so coarser tiers see corrections too). Odd series are counters that reset now
    /// and then. Values are multiples of 1/4, so sums are exact in any order.
    pub fn generate(&self, name_prefix: &str) -> Vec<(u32, Vec<Record>)> {
        let mut rng = Lcg(self.seed);
        let mut parts = Vec::new();
        for p in 0..self.partitions {
            let series: Vec<String> = (0..self.series_per_partition)
                .map(|i| {
                    let kind = if i % 2 == 0 { "gauge" } else { "total" };
                    // On the partition its key hashes to, as the contract asks.
                    first_key_in_partition(p, self.partitions, |n| {
                        format!("{name_prefix}_{kind}{{dev=\"p{p}s{i}n{n}\"}}")
                    })
                })
                .collect();
            let mut counters = vec![0.0f64; series.len()];
            let scrapes = if p == self.partitions - 1 {
                self.idle_after.min(self.scrapes)
            } else {
                self.scrapes
            };
            let mut records: Vec<(i64, Record)> = Vec::new();
            for s in 0..scrapes {
                // No two samples of a series share a time.
                let ts = self.t0 + s as i64 * self.step_ms + p as i64 * 7;
                let mut rec = Vec::new();
                for (i, k) in series.iter().enumerate() {
                    let v = if i % 2 == 0 {
                        (rng.next() % 1000) as f64 / 4.0
                    } else {
                        if rng.next().is_multiple_of(50) {
                            counters[i] = 0.0;
                        }
                        counters[i] += (rng.next() % 20) as f64;
                        counters[i]
                    };
                    rec.push((k.clone(), ts, v));
                }
                records.push((ts, rec));
            }
            let mut order: Vec<(usize, usize)> = Vec::new();
            for (i, (ts, _)) in records.iter().enumerate() {
                let r = rng.next() % 100;
                let last_of_5m = (ts - self.t0) % 300_000 >= 300_000 - self.step_ms;
                let delay = match r {
                    _ if last_of_5m => 7,
                    0..=4 => 1,
                    5..=7 => 5,
                    8 => 18,
                    _ => 0,
                };
                order.push(((i + delay) * 2 + 1, i));
            }
            order.sort();
            parts.push((
                p,
                order
                    .into_iter()
                    .map(|(_, i)| records[i].1.clone())
                    .collect(),
            ));
        }
        parts
    }
}

/// What a row must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
    pub increase: f64,
    /// Every value, sorted: quantiles are checked against ranks of it.
    pub sorted: Vec<f64>,
}

/// `(tier index, series, window start ms)`.
pub type RowKey = (usize, String, i64);

/// The batch computation: on-time samples (lateness judged per partition in log order,
/// against the partition's highest event time so far minus the out-of-orderness), then
/// plain statistics per series and window of each tier. Returns the rows and how many
/// samples were too late.
pub fn reference(
    parts: &[(u32, Vec<Record>)],
    sizes_ms: &[i64],
    out_of_orderness_ms: i64,
    lateness_ms: i64,
) -> (BTreeMap<RowKey, Expected>, usize) {
    let mut samples: BTreeMap<RowKey, Vec<(i64, f64)>> = BTreeMap::new();
    let mut late = 0;
    for (_, recs) in parts {
        let mut max_ts: Option<i64> = None;
        for rec in recs {
            let pw = max_ts.map(|m| m - out_of_orderness_ms);
            for (k, ts, v) in rec {
                let end = (ts.div_euclid(sizes_ms[0]) + 1) * sizes_ms[0];
                if pw.is_some_and(|pw| pw >= end + lateness_ms) {
                    late += 1;
                    continue;
                }
                for (tier, size) in sizes_ms.iter().enumerate() {
                    let start = ts.div_euclid(*size) * size;
                    samples
                        .entry((tier, k.clone(), start))
                        .or_default()
                        .push((*ts, *v));
                }
            }
            for (_, ts, _) in rec {
                max_ts = Some(max_ts.map_or(*ts, |m| m.max(*ts)));
            }
        }
    }
    let rows = samples
        .into_iter()
        .map(|(k, mut s)| {
            s.sort_by_key(|x| x.0);
            let vals: Vec<f64> = s.iter().map(|x| x.1).collect();
            let mut sorted = vals.clone();
            sorted.sort_by(f64::total_cmp);
            let e = Expected {
                count: vals.len() as u64,
                sum: vals.iter().sum(),
                min: sorted[0],
                max: sorted[sorted.len() - 1],
                first: vals[0],
                last: vals[vals.len() - 1],
                increase: vals.windows(2).map(|w| counter_step(w[0], w[1])).sum(),
                sorted,
            };
            (k, e)
        })
        .collect();
    (rows, late)
}

/// A row as read back from a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Actual {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
    pub increase: f64,
    /// p50, p90, p95, p99.
    pub quantiles: [f64; 4],
}

/// Every expected row is there with the expected values (quantiles within the sketch's
/// relative error) and nothing else is; the error names the first differences.
pub fn compare(
    got: &BTreeMap<RowKey, Actual>,
    expected: &BTreeMap<RowKey, Expected>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for k in expected.keys().filter(|k| !got.contains_key(*k)).take(5) {
        problems.push(format!("missing {k:?}"));
    }
    for k in got.keys().filter(|k| !expected.contains_key(*k)).take(5) {
        problems.push(format!("unexpected {k:?}"));
    }
    for (k, e) in expected {
        let Some(r) = got.get(k) else { continue };
        let same = r.count == e.count
            && r.sum == e.sum
            && (r.min, r.max) == (e.min, e.max)
            && (r.first, r.last) == (e.first, e.last)
            && r.increase == e.increase;
        if !same {
            problems.push(format!("{k:?}: got {r:?}, want {e:?}"));
        }
        for (i, q) in QUANTILES.iter().enumerate() {
            let exact = e.sorted[(q * (e.sorted.len() as f64 - 1.0)) as usize];
            let tol = SKETCH_RELATIVE_ERROR * exact.abs() + 1e-9;
            if (r.quantiles[i] - exact).abs() > tol {
                problems.push(format!(
                    "{k:?}: p{} {} vs exact {exact}",
                    q * 100.0,
                    r.quantiles[i]
                ));
            }
        }
        if problems.len() > 10 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
