//! Tier sizes and what follows from them.
use weir_runtime::config::RollupConfig;

#[derive(Debug, Clone)]
pub struct Tiers {
    pub names: Vec<String>,
    pub sizes_ms: Vec<i64>,
    pub allowed_lateness_ms: i64,
}

impl Tiers {
    pub fn from_config(c: &RollupConfig) -> Self {
        Self {
            names: c.tiers.iter().map(|t| t.name.clone()).collect(),
            sizes_ms: c.tiers.iter().map(|t| t.size.as_millis() as i64).collect(),
            allowed_lateness_ms: c.allowed_lateness.as_millis() as i64,
        }
    }

    /// When every window a sample at `ts` feeds is final: the end of its coarsest window
    /// plus the allowed lateness.
    pub fn release_at(&self, ts: i64) -> i64 {
        let big = self.sizes_ms.last().copied().unwrap_or(60_000);
        (ts.div_euclid(big) + 1) * big + self.allowed_lateness_ms
    }
}
