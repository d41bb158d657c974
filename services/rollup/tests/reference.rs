//! Every rollup row equals a plain batch computation over the same samples: out-of-order
//! samples, samples late within and beyond the allowed lateness, counter resets and an
//! idle partition included. In process, without Kafka; the end-to-end tests check the
//! same through tansu into ClickHouse.
use std::collections::BTreeMap;
use std::time::Duration;

use weir_rollup::dataflow::{Key, TierRow, Timing};
use weir_rollup::inprocess::{run, Partitions, RunOptions};
use weir_rollup::testkit::{compare, reference, Actual, DataSet, RowKey};
use weir_rollup::tiers::Tiers;

const OOO: i64 = 10_000;
const LATENESS: i64 = 60_000;

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
        // Only partitions with records in a poll count: the silent one drops out at once.
        idle_timeout: Duration::ZERO,
        max_future: Duration::from_secs(600),
    }
}

fn data() -> Vec<(u32, Vec<weir_rollup::testkit::Record>)> {
    DataSet {
        partitions: 4,
        series_per_partition: 12,
        scrapes: 900,
        step_ms: 10_000,
        t0: 1_700_000_000_000 / 3_600_000 * 3_600_000,
        idle_after: 120,
        seed: 42,
    }
    .generate("m")
}

fn as_log(parts: &[(u32, Vec<weir_rollup::testkit::Record>)]) -> Partitions {
    parts
        .iter()
        .map(|(p, recs)| {
            let recs = recs
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|(k, ts, v)| (Key::from(k.as_str()), *ts, *v))
                        .collect()
                })
                .collect();
            (*p, recs)
        })
        .collect()
}

/// The final row per series and window: the one with the most samples (what
/// ClickHouse's ReplacingMergeTree keeps with the count as version).
fn final_rows(rows: &[TierRow]) -> BTreeMap<RowKey, Actual> {
    let mut best: BTreeMap<RowKey, &TierRow> = BTreeMap::new();
    for r in rows {
        let k = (r.tier, r.key.to_string(), r.window.start);
        match best.get(&k) {
            Some(prev) if prev.rollup.count >= r.rollup.count => {}
            _ => {
                best.insert(k, r);
            }
        }
    }
    best.into_iter()
        .map(|(k, r)| {
            let x = &r.rollup;
            let a = Actual {
                count: x.count,
                sum: x.sum,
                min: x.min,
                max: x.max,
                first: x.first,
                last: x.last,
                increase: x.increase,
                quantiles: [
                    x.quantile(0.5),
                    x.quantile(0.9),
                    x.quantile(0.95),
                    x.quantile(0.99),
                ],
            };
            (k, a)
        })
        .collect()
}

#[test]
fn every_row_equals_the_batch_computation() {
    let parts = data();
    let t = tiers();
    let (expected, late) = reference(&parts, &t.sizes_ms, OOO, LATENESS);
    assert!(late > 0, "the data set has samples beyond the lateness");
    let out = run(
        &as_log(&parts),
        &t,
        timing(),
        RunOptions {
            workers: 1,
            records_per_poll: 1,
            keep_rows: true,
        },
    );
    assert_eq!(out.late, late, "late samples counted");
    compare(&final_rows(&out.rows), &expected).unwrap();
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
    let (expected, late) = reference(&parts, &t.sizes_ms, OOO, LATENESS);
    let out = run(
        &as_log(&parts),
        &t,
        timing(),
        RunOptions {
            workers: 2,
            records_per_poll: 17,
            keep_rows: true,
        },
    );
    assert_eq!(out.late, late);
    compare(&final_rows(&out.rows), &expected).unwrap();
}
