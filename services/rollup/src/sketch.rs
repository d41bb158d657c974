//! A DDSketch with sparse stores: the same logarithmic bins as the `sketches-ddsketch`
//! crate (its `Config` maps values to bins and back, so the relative-error guarantee is
//! the crate's), stored as sorted `(bin, count)` runs instead of dense arrays.
//!
//! The dense stores grow in steps of 128 bins (1 KiB); a series' minute holds a handful
//! of samples, and the cascade keeps up to an hour of finer rows per series, which with
//! dense stores cost ~17 KiB per series (1.7 GB for 100k series). Sparse, a row's sketch
//! is as large as its distinct bins. Bins are bounded by the value range (≈2,000 from
//! 1e-9 to 1e9 at 1% error), so no collapsing is needed and merges are exact.
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
    neg: Vec<(i32, u64)>,
    zero: u64,
    pos: Vec<(i32, u64)>,
    count: u64,
    min: f64,
    max: f64,
}

fn runs(mut keys: Vec<i32>) -> Vec<(i32, u64)> {
    keys.sort_unstable();
    let mut out: Vec<(i32, u64)> = Vec::new();
    for k in keys {
        match out.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => out.push((k, 1)),
        }
    }
    out
}

fn merge_runs(a: &[(i32, u64)], b: &[(i32, u64)]) -> Vec<(i32, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
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
                out.push((a[i].0, a[i].1 + b[j].1));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn key_at_rank(bins: &[(i32, u64)], rank: u64) -> i32 {
    let mut n = 0;
    for (k, c) in bins {
        n += c;
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
        s.neg = runs(neg);
        s.pos = runs(pos);
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
        let neg_count: u64 = self.neg.iter().map(|b| b.1).sum();
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
