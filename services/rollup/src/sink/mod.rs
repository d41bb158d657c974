//! Where rollup rows go: a ClickHouse table per tier, and `metrics.rollup.<tier>`; plus
//! late samples to the late-data topic.
pub mod clickhouse;
pub mod topics;

use weir_contract::avro::RollupRecord;

use crate::dataflow::TierRow;

/// A row as both sinks write it (the `metrics.rollup.<tier>` schema's fields).
pub fn record_of<'a>(r: &'a TierRow, tier: &'a str) -> RollupRecord<'a> {
    let x = &r.rollup;
    RollupRecord {
        series: &r.key,
        tier,
        window_start: r.window.start,
        window_end: r.window.end,
        count: x.count as i64,
        sum: x.sum,
        min: x.min,
        max: x.max,
        first: x.first,
        first_ts: x.first_ts,
        last: x.last,
        last_ts: x.last_ts,
        increase: x.increase,
        p50: x.quantile(0.5),
        p90: x.quantile(0.9),
        p95: x.quantile(0.95),
        p99: x.quantile(0.99),
    }
}

/// The metric name of a canonical series key.
pub fn metric_of(key: &str) -> &str {
    key.split_once('{').map_or(key, |(n, _)| n)
}

/// Rows of one flush, by tier.
pub fn by_tier(rows: Vec<TierRow>, tiers: usize) -> Vec<Vec<TierRow>> {
    let mut out: Vec<Vec<TierRow>> = (0..tiers).map(|_| Vec::new()).collect();
    for r in rows {
        if let Some(v) = out.get_mut(r.tier) {
            v.push(r);
        }
    }
    out
}
