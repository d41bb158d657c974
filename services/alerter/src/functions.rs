//! Functions over one series' samples, computed as Prometheus 2.42 computes them (the
//! version Debian ships, whose `promtool` checks the repository's rule tests).
use crate::plan::RangeFn;

/// A sample: event time in milliseconds and value.
pub type Point = (i64, f64);

/// `func` over the samples of `[t - range, t]` (`points` already cut to that range and
/// sorted by time); `None` when Prometheus returns no element.
pub fn range_fn(func: RangeFn, points: &[Point], t: i64, range_ms: i64) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let values = points.iter().map(|p| p.1);
    Some(match func {
        RangeFn::Avg => avg(values),
        RangeFn::Min => values.fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
        RangeFn::Max => values.fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
        RangeFn::Sum => sum(values),
        RangeFn::Count => points.len() as f64,
        RangeFn::Last => points[points.len() - 1].1,
        RangeFn::Quantile(phi) => quantile(phi, values.collect()),
        RangeFn::Rate => extrapolated_rate(points, t, range_ms, true)?,
        RangeFn::Increase => extrapolated_rate(points, t, range_ms, false)?,
    })
}

/// Kahan–Neumaier summation step, as Prometheus' `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `sum_over_time`: compensated summation.
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for v in values {
        (s, c) = kahan_inc(v, s, c);
    }
    if s.is_infinite() {
        s
    } else {
        s + c
    }
}

/// `avg_over_time`: a compensated incremental mean, infinities kept as Prometheus does.
fn avg(values: impl Iterator<Item = f64>) -> f64 {
    let (mut mean, mut count, mut c): (f64, f64, f64) = (0.0, 0.0, 0.0);
    for v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub fn quantile(phi: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `rate` / `increase`: the counter's increase over the samples (a drop is a reset: the
/// value before it is added back), extrapolated towards the range's ends as Prometheus
/// does. Fewer than two samples give no element.
pub fn extrapolated_rate(points: &[Point], t: i64, range_ms: i64, is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let range_start = t - range_ms;
    let range_end = t;
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.1 - first.1;
    let mut prev = first.1;
    for &(_, v) in &points[1..] {
        if v < prev {
            result += prev;
        }
        prev = v;
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_between = sampled / (points.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        // A counter cannot go below zero: do not extrapolate the start past the zero
        // point.
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    if to_start < threshold {
        interval += to_start;
    } else {
        interval += avg_between / 2.0;
    }
    if to_end < threshold {
        interval += to_end;
    } else {
        interval += avg_between / 2.0;
    }
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_handles_a_reset_and_extrapolates() {
        // 0,10,20,30,40 at 0..4m then a reset to 5 at 5m: increase 45 over 5m of samples,
        // range [0, 5m] fully covered.
        let pts: Vec<Point> = vec![
            (0, 0.0),
            (60_000, 10.0),
            (120_000, 20.0),
            (180_000, 30.0),
            (240_000, 40.0),
            (300_000, 5.0),
        ];
        let inc = extrapolated_rate(&pts, 300_000, 300_000, false).unwrap();
        assert!((inc - 45.0).abs() < 1e-9, "{inc}");
        let rate = extrapolated_rate(&pts, 300_000, 300_000, true).unwrap();
        assert!((rate - 0.15).abs() < 1e-12);
        assert_eq!(extrapolated_rate(&pts[..1], 0, 300_000, false), None);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.9, vec![10.0]), 10.0);
        assert_eq!(quantile(1.5, vec![1.0]), f64::INFINITY);
    }
}
