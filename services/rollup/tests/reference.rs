//! Every rollup row equals a plain batch computation over the same samples: out-of-order
//! samples, samples late within and beyond the allowed lateness, counter resets and an
//! idle partition included.
use std::collections::BTreeMap;
use std::time::Duration;

use weir_rollup::aggregate::{counter_step, QUANTILES, SKETCH_RELATIVE_ERROR};
use weir_rollup::dataflow::{Key, TierRow, Timing};
use weir_rollup::inprocess::{run, Partitions, RunOptions};
use weir_rollup::tiers::Tiers;

type Record = Vec<(Key, i64, f64)>;

const OOO: i64 = 10_000;
const LATENESS: i64 = 60_000;
const STEP: i64 = 10_000;

fn tiers() -> Tiers {
    Tiers {
        names: vec!["1m".into(), "5m".into(), "1h".into()],
        sizes_ms: vec![60_000, 300_000, 3_600_000],
        allowed_lateness_ms: LATENESS,
    }
}

fn timing() -> Timing {
    Timing {
        out_of_orderness: Duration::from_millis(OOO as u64),
        idle_timeout: Duration::ZERO,
    }
}

/// A small deterministic generator (no dependency on a random crate's stream).
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

/// 4 partitions of 12 series each, one record per partition per 10 s scrape over 2.5
/// hours. Some records swap with their neighbour (out of order within the bound), some
/// are held back 50 s (late, within lateness), some 3 minutes (beyond it). Half the
/// series are counters that reset now and then. Partition 3 goes silent after 20 minutes.
fn data() -> Partitions {
    let mut rng = Lcg(42);
    let t0: i64 = 1_700_000_000_000 / 3_600_000 * 3_600_000;
    let mut parts = Vec::new();
    for p in 0..4u32 {
        let series: Vec<Key> = (0..12)
            .map(|i| {
                Key::from(format!(
                    "m_{}{{dev=\"p{p}s{i}\"}}",
                    if i % 2 == 0 { "gauge" } else { "total" }
                ))
            })
            .collect();
        let mut counters = vec![0.0f64; series.len()];
        let scrapes = if p == 3 { 120 } else { 900 };
        let mut records: Vec<(i64, Record)> = Vec::new();
        for s in 0..scrapes {
            let ts = t0 + s as i64 * STEP + (p as i64) * 7; // no two samples of a series share a time
            let mut rec = Vec::new();
            for (i, k) in series.iter().enumerate() {
                let v = if i % 2 == 0 {
                    (rng.next() % 1000) as f64 / 4.0
                } else {
                    if rng.next().is_multiple_of(50) {
                        counters[i] = 0.0; // reset
                    }
                    counters[i] += (rng.next() % 20) as f64;
                    counters[i]
                };
                rec.push((k.clone(), ts, v));
            }
            records.push((ts, rec));
        }
        // Reorder: delay some records by a number of positions.
        let mut order: Vec<(i64, usize)> = Vec::new(); // (position key, index)
        for (i, (ts, _)) in records.iter().enumerate() {
            let r = rng.next() % 100;
            // The last scrape of every 5 minutes comes 70 s late (just within the lateness), so that coarser tiers
            // (and the hour at its end) see corrections too.
            let last_of_5m = (ts - t0) % 300_000 >= 290_000;
            let delay = match r {
                _ if last_of_5m => 7,
                0..=4 => 1, // out of order within the bound (one scrape)
                5..=7 => 5, // 50 s: after its minute closed, within lateness
                8 => 18,    // 3 minutes: beyond lateness
                _ => 0,
            };
            order.push(((i + delay) as i64 * 2 + 1, i));
        }
        order.sort();
        let recs = order
            .into_iter()
            .map(|(_, i)| records[i].1.clone())
            .collect();
        parts.push((p, recs));
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
struct Expect {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: f64,
    last: f64,
    increase: f64,
    sorted: Vec<f64>,
}

type RowKey = (usize, String, i64);

/// The batch computation: which samples are on time (judged per partition in log order),
/// then plain per-window statistics over them.
fn reference(parts: &Partitions, t: &Tiers) -> (BTreeMap<RowKey, Expect>, usize) {
    let mut samples: BTreeMap<(usize, String, i64), Vec<(i64, f64)>> = BTreeMap::new();
    let mut late = 0;
    for (_, recs) in parts {
        let mut max_ts: Option<i64> = None;
        for rec in recs {
            let pw = max_ts.map(|m| m - OOO);
            for (k, ts, v) in rec {
                let end = (ts.div_euclid(t.sizes_ms[0]) + 1) * t.sizes_ms[0];
                if pw.is_some_and(|pw| pw >= end + t.allowed_lateness_ms) {
                    late += 1;
                    continue;
                }
                for (tier, size) in t.sizes_ms.iter().enumerate() {
                    let start = ts.div_euclid(*size) * size;
                    samples
                        .entry((tier, k.to_string(), start))
                        .or_default()
                        .push((*ts, *v));
                }
            }
            for (_, ts, _) in rec {
                max_ts = Some(max_ts.map_or(*ts, |m| m.max(*ts)));
            }
        }
    }
    let expected = samples
        .into_iter()
        .map(|(k, mut s)| {
            s.sort_by_key(|x| x.0);
            let vals: Vec<f64> = s.iter().map(|x| x.1).collect();
            let mut sorted = vals.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let e = Expect {
                count: vals.len() as u64,
                sum: vals.iter().sum(),
                min: sorted[0],
                max: *sorted.last().unwrap(),
                first: vals[0],
                last: *vals.last().unwrap(),
                increase: vals.windows(2).map(|w| counter_step(w[0], w[1])).sum(),
                sorted,
            };
            (k, e)
        })
        .collect();
    (expected, late)
}

/// The final row per series and window: the one with the most samples (what
/// ClickHouse's ReplacingMergeTree keeps with the count as version).
fn final_rows(rows: &[TierRow]) -> BTreeMap<RowKey, &TierRow> {
    let mut out: BTreeMap<RowKey, &TierRow> = BTreeMap::new();
    for r in rows {
        let k = (r.tier, r.key.to_string(), r.window.start);
        match out.get(&k) {
            Some(prev) if prev.rollup.count >= r.rollup.count => {}
            _ => {
                out.insert(k, r);
            }
        }
    }
    out
}

fn check(rows: &[TierRow], expected: &BTreeMap<RowKey, Expect>) {
    let got = final_rows(rows);
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    for (k, e) in expected {
        let r = &got[k].rollup;
        let what = format!("{k:?}");
        assert_eq!(r.count, e.count, "count of {what}");
        // Values are multiples of 1/4 and small: sums are exact in any order.
        assert_eq!(r.sum, e.sum, "sum of {what}");
        assert_eq!((r.min, r.max), (e.min, e.max), "min/max of {what}");
        assert_eq!((r.first, r.last), (e.first, e.last), "first/last of {what}");
        assert_eq!(r.increase, e.increase, "increase of {what}");
        for q in QUANTILES {
            let exact = e.sorted[(q * (e.sorted.len() as f64 - 1.0)) as usize];
            let got = r.quantile(q);
            let tol = SKETCH_RELATIVE_ERROR * exact.abs() + 1e-9;
            assert!(
                (got - exact).abs() <= tol,
                "p{} of {what}: {got} vs {exact}",
                q * 100.0
            );
        }
    }
}

#[test]
fn every_row_equals_the_batch_computation() {
    let parts = data();
    let t = tiers();
    let (expected, late) = reference(&parts, &t);
    assert!(late > 0, "the data set has samples beyond the lateness");
    let out = run(
        &parts,
        &t,
        timing(),
        RunOptions {
            workers: 1,
            records_per_poll: 1,
            keep_rows: true,
            ..Default::default()
        },
    );
    assert_eq!(out.late, late, "late samples counted");
    check(&out.rows, &expected);
    // Corrections happened: windows were emitted again within the lateness, in every tier.
    for tier in 0..3 {
        assert!(
            out.rows.iter().any(|r| r.tier == tier && r.revision > 0),
            "tier {tier} re-emitted a corrected window"
        );
    }
}

#[test]
fn two_workers_and_another_interleaving_give_the_same_rows() {
    let parts = data();
    let t = tiers();
    let (expected, late) = reference(&parts, &t);
    let out = run(
        &parts,
        &t,
        timing(),
        RunOptions {
            workers: 2,
            records_per_poll: 17,
            keep_rows: true,
            ..Default::default()
        },
    );
    assert_eq!(out.late, late);
    check(&out.rows, &expected);
}
