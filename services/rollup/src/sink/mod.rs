//! Where rollup rows go: a ClickHouse table per tier, and `metrics.rollup.<tier>`; plus
//! late samples to the late-data topic.
pub mod clickhouse;
pub mod topics;

use crate::dataflow::TierRow;

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
