//! A DDSketch with sparse stores: the same logarithmic bins as the `sketches-ddsketch`
//! crate (its `Config` maps values to bins and back, so the relative-error guarantee is
//! the crate's), stored as sorted `(bin, count)` runs instead of dense arrays.
//!
//! The dense stores grow in steps of 128 bins (1 KiB); a series' minute holds a handful
//! of samples, and the cascade keeps up to an hour of finer rows per series, which with
//! dense stores cost ~17 KiB per series (1.7 GB for 100k series). Sparse, a row's sketch
//! is as large as its distinct bins. Bins are bounded by the value range (≈2,000 from
//! 1e-9 to 1e9 at 1% error), so no collapsing is needed and merges are exact.
//!
//! A bin's count is a `u32` (8 bytes a bin instead of 16: the cascade's retained sketches
//! are most of the rollup's memory). It saturates at 4.29e9 samples of one series in one
//! bin of one window, far beyond any scrape or push rate; the total count is a `u64`.
use std::sync::OnceLock;

use sketches_ddsketch::Config;

/// Relative error of every quantile.
pub const RELATIVE_ERROR: f64 = 0.01;
/// Values closer to zero than this count as zero.
const MIN_VALUE: f64 = 1.0e-9;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| Config::new(RELATIVE_ERROR, 2048, MIN_VALUE))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    /// Bins of |v| for negative values, ascending.
    neg: Vec<Bin>,
    zero: u64,
    pos: Vec<Bin>,
    count: u64,
    min: f64,
    max: f64,
}

/// A bin's key and how many values fell into it.
type Bin = (i32, u32);

fn runs(keys: &mut [i32]) -> Vec<Bin> {
    keys.sort_unstable();
    let distinct = keys.chunk_by(|a, b| a == b).count();
    let mut out: Vec<Bin> = Vec::with_capacity(distinct);
    out.extend(
        keys.chunk_by(|a, b| a == b)
            .map(|run| (run[0], u32::try_from(run.len()).unwrap_or(u32::MAX))),
    );
    out
}

/// Merges two ascending runs into a vector of exactly their distinct bins: merged
/// sketches are kept for up to a coarse window, so spare capacity would be held as long.
fn merge_runs(a: &[Bin], b: &[Bin]) -> Vec<Bin> {
    let mut shared = 0;
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(a.len() + b.len() - shared);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn key_at_rank(bins: &[Bin], rank: u64) -> i32 {
    let mut n = 0;
    for (k, c) in bins {
        n += u64::from(*c);
        if n > rank {
            return *k;
        }
    }
    bins.last().map_or(0, |b| b.0)
}

impl Sketch {
    pub fn from_values(values: impl Iterator<Item = f64>) -> Self {
        let c = config();
        let (mut neg, mut pos) = (Vec::new(), Vec::new());
        let mut s = Sketch {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        };
        for v in values {
            if v > MIN_VALUE {
                pos.push(c.key(v));
            } else if v < -MIN_VALUE {
                neg.push(c.key(-v));
            } else {
                s.zero += 1;
            }
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            s.count += 1;
        }
        s.neg = runs(&mut neg);
        s.pos = runs(&mut pos);
        s
    }

    pub fn merge(&mut self, o: &Sketch) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = o.clone();
            return;
        }
        self.neg = merge_runs(&self.neg, &o.neg);
        self.pos = merge_runs(&self.pos, &o.pos);
        self.zero += o.zero;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at rank ⌊q·(n−1)⌋ within [`RELATIVE_ERROR`]; exact min and max for q = 0
    /// and 1; NaN when empty (as the crate's `quantile`).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return f64::NAN;
        }
        if q == 0.0 {
            return self.min;
        }
        if q == 1.0 {
            return self.max;
        }
        let c = config();
        let rank = (q * (self.count as f64 - 1.0)) as u64;
        let neg_count: u64 = self.neg.iter().map(|b| u64::from(b.1)).sum();
        if rank < neg_count {
            -c.value(key_at_rank(&self.neg, neg_count - rank - 1))
        } else if rank < neg_count + self.zero {
            0.0
        } else {
            c.value(key_at_rank(&self.pos, rank - neg_count - self.zero))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sketches_ddsketch::DDSketch;

    #[test]
    fn answers_as_the_dense_ddsketch_does() {
        let values: Vec<f64> = (0..2000)
            .map(|i| ((i * 7919) % 1000) as f64 - 300.0 + (i % 3) as f64 * 0.25)
            .collect();
        let mut dense = DDSketch::new(*config());
        for v in &values {
            dense.add(*v);
        }
        let (a, b) = values.split_at(700);
        let mut sparse = Sketch::from_values(a.iter().copied());
        sparse.merge(&Sketch::from_values(b.iter().copied()));
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            assert_eq!(
                sparse.quantile(q),
                dense.quantile(q).unwrap().unwrap(),
                "q={q}"
            );
        }
        assert_eq!(sparse.count(), 2000);
    }
}
