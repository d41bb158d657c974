//! Rollup rows as the e2e tests read them back from ClickHouse.
use std::collections::BTreeMap;

use weir_rollup::testkit::{Actual, RowKey};

use crate::clickhouse;

/// The rows of `database.rollup_<tier_name>` with FINAL (one per series and window)
/// whose series starts with `prefix`, keyed for tier index `tier`.
pub fn rows(
    database: &str,
    tier_name: &str,
    tier: usize,
    prefix: &str,
) -> BTreeMap<RowKey, Actual> {
    let q = format!(
        "SELECT series, toUInt32(window_start) AS ws, count, sum, min, max, first, last, increase, p50, p90, p95, p99 FROM {database}.rollup_{tier_name} FINAL WHERE startsWith(series, '{prefix}') FORMAT JSONEachRow"
    );
    let mut out = BTreeMap::new();
    for line in clickhouse(&q).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSONEachRow line");
        // ClickHouse quotes 64-bit numbers in JSON.
        let num = |k: &str| -> f64 {
            match &v[k] {
                serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
                x => x.as_f64().unwrap_or(f64::NAN),
            }
        };
        let series = v["series"].as_str().unwrap_or_default().to_string();
        out.insert(
            (tier, series, num("ws") as i64 * 1000),
            Actual {
                count: num("count") as u64,
                sum: num("sum"),
                min: num("min"),
                max: num("max"),
                first: num("first"),
                last: num("last"),
                increase: num("increase"),
                quantiles: [num("p50"), num("p90"), num("p95"), num("p99")],
            },
        );
    }
    out
}
