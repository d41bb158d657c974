//! What a rollup row holds, computed per series and window: count, sum, min, max, first,
//! last (avg is sum / count), counter increase with resets handled as Prometheus does,
//! and quantiles from a DDSketch (relative error [`SKETCH_RELATIVE_ERROR`]).
//!
//! The finest tier keeps a window's raw samples until it closes (a minute of one series
//! is a handful of samples), so out-of-order samples are sorted before first, last and
//! the increase are taken. Coarser tiers combine finer rows: sums and extremes add up,
//! sketches merge exactly (same bins), and the increase adds the finer increases plus
//! the steps between one finer window's last sample and the next one's first.
use std::sync::Arc;

use weir_window::{Aggregate, Combine, Window};

use crate::sketch::Sketch;

/// The sketch's relative error: a quantile is within this fraction of the true value at
/// rank ⌊q·(n−1)⌋.
pub const SKETCH_RELATIVE_ERROR: f64 = crate::sketch::RELATIVE_ERROR;

/// The quantiles each row carries.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// One series' aggregate over one window.
#[derive(Clone)]
pub struct Rollup {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first_ts: i64,
    pub first: f64,
    pub last_ts: i64,
    pub last: f64,
    /// Sum of the rises between consecutive samples, a drop counting as a reset (the
    /// value after it is all increase) — Prometheus' counter semantics without
    /// extrapolation. Meaningful for counters.
    pub increase: f64,
    pub sketch: Sketch,
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("first", &(self.first_ts, self.first))
            .field("last", &(self.last_ts, self.last))
            .field("increase", &self.increase)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

impl Rollup {
    pub fn quantile(&self, q: f64) -> f64 {
        self.sketch.quantile(q)
    }

    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// The counter step from `prev` to `next`.
pub fn counter_step(prev: f64, next: f64) -> f64 {
    if next >= prev {
        next - prev
    } else {
        next
    }
}

/// The finest tier: samples to a [`Rollup`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RollupAgg;

impl Aggregate for RollupAgg {
    type Value = f64;
    type State = Vec<(i64, f64)>;
    type Output = Arc<Rollup>;

    #[inline]
    fn new_state(&self) -> Self::State {
        Vec::with_capacity(8)
    }

    #[inline]
    fn add(&self, state: &mut Self::State, ts: i64, value: &f64) {
        state.push((ts, *value));
    }

    fn merge(&self, into: &mut Self::State, from: Self::State) {
        into.extend(from);
    }

    #[inline]
    fn prefetch(&self, state: &Self::State) {
        // Where the next sample goes, and where `finish` starts reading.
        weir_window::prefetch(state.as_ptr().wrapping_add(state.len()));
        weir_window::prefetch(state.as_ptr());
    }

    fn finish(&self, state: &Self::State, _window: Window) -> Arc<Rollup> {
        let mut samples = state.clone();
        // Stable by time; equal timestamps keep arrival order (a duplicate sample of a
        // series counts as it came, the same in every run).
        samples.sort_by_key(|s| s.0);
        let (mut sum, mut min, mut max, mut increase) =
            (0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0);
        for (i, (_, v)) in samples.iter().enumerate() {
            sum += v;
            min = min.min(*v);
            max = max.max(*v);
            if i > 0 {
                increase += counter_step(samples[i - 1].1, *v);
            }
        }
        let (first_ts, first) = samples.first().copied().unwrap_or((0, f64::NAN));
        let (last_ts, last) = samples.last().copied().unwrap_or((0, f64::NAN));
        Arc::new(Rollup {
            count: samples.len() as u64,
            sum,
            min,
            max,
            first_ts,
            first,
            last_ts,
            last,
            increase,
            sketch: Sketch::from_values(samples.iter().map(|s| s.1)),
        })
    }
}

/// Coarser tiers: finer rows, in time order, to one row.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollupCombine;

impl Combine for RollupCombine {
    type Output = Arc<Rollup>;

    fn combine(&self, parts: &[&Arc<Rollup>], _window: Window) -> Arc<Rollup> {
        let mut out = Rollup {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first_ts: 0,
            first: f64::NAN,
            last_ts: 0,
            last: f64::NAN,
            increase: 0.0,
            sketch: Sketch::default(),
        };
        for (i, p) in parts.iter().enumerate() {
            if i == 0 {
                out.first_ts = p.first_ts;
                out.first = p.first;
            } else {
                out.increase += counter_step(out.last, p.first);
            }
            out.count += p.count;
            out.sum += p.sum;
            out.min = out.min.min(p.min);
            out.max = out.max.max(p.max);
            out.increase += p.increase;
            out.last_ts = p.last_ts;
            out.last = p.last;
            out.sketch.merge(&p.sketch);
        }
        Arc::new(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollup(samples: &[(i64, f64)]) -> Arc<Rollup> {
        RollupAgg.finish(&samples.to_vec(), Window::new(0, 60_000))
    }

    #[test]
    fn out_of_order_samples_and_a_counter_reset() {
        let r = rollup(&[(3_000, 2.0), (1_000, 10.0), (2_000, 12.0), (4_000, 5.0)]);
        // In time order: 10, 12, 2 (reset), 5.
        assert_eq!((r.first, r.last), (10.0, 5.0));
        assert_eq!(r.increase, 2.0 + 2.0 + 3.0);
        assert_eq!((r.count, r.sum, r.min, r.max), (4, 29.0, 2.0, 12.0));
    }

    #[test]
    fn combining_windows_equals_one_window_over_all_samples() {
        let a = rollup(&[(1, 10.0), (2, 15.0)]);
        let b = rollup(&[(61_000, 3.0), (62_000, 4.0)]);
        let both = rollup(&[(1, 10.0), (2, 15.0), (61_000, 3.0), (62_000, 4.0)]);
        let c = RollupCombine.combine(&[&a, &b], Window::new(0, 300_000));
        assert_eq!(c.increase, both.increase);
        assert_eq!(
            (c.count, c.sum, c.min, c.max),
            (both.count, both.sum, both.min, both.max)
        );
        assert_eq!((c.first, c.last), (10.0, 4.0));
        for q in QUANTILES {
            assert_eq!(c.quantile(q), both.quantile(q));
        }
    }
}
