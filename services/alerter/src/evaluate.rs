//! Evaluation of plans at a step, in two stages.
//!
//! Stage one runs where a series' partition is read: it keeps each series' recent
//! samples and, at a step, turns every series matched by a rule into a [`Partial`] —
//! the element itself for per-series rules, a partial aggregate per group key, or the
//! fact that an `absent_over_time` selector saw a sample. Stage two merges the partials
//! of all partitions for a rule and step into the rule's result vector. In one process
//! both run back to back ([`evaluate_all`]); across processes the partials travel
//! through a repartition topic keyed by rule and group.
use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::functions::{self, Point};
use crate::labels::{Labels, METRIC_NAME};
use crate::plan::{apply_steps, AggOp, Inner, Plan, SeriesExpr, LOOKBACK_MS};

/// Prometheus' staleness marker (a NaN with these bits ends a series), as the contract
/// defines it.
pub use weir_contract::model::STALE_NAN_BITS as STALE_NAN;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// A partial aggregate: enough to merge sum, avg, min, max and count across partitions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub sum: f64,
    pub count: f64,
    pub min: f64,
    pub max: f64,
}

impl Acc {
    pub fn of(v: f64) -> Self {
        Self {
            sum: v,
            count: 1.0,
            min: v,
            max: v,
        }
    }

    pub fn merge(&mut self, o: &Acc) {
        self.sum += o.sum;
        self.count += o.count;
        // As Prometheus: a NaN is replaced by any number, never the other way round.
        if o.min < self.min || self.min.is_nan() {
            self.min = o.min;
        }
        if o.max > self.max || self.max.is_nan() {
            self.max = o.max;
        }
    }

    pub fn value(&self, op: AggOp) -> f64 {
        match op {
            AggOp::Sum => self.sum,
            AggOp::Avg => self.sum / self.count,
            AggOp::Min => self.min,
            AggOp::Max => self.max,
            AggOp::Count => self.count,
        }
    }
}

/// What stage one says about one rule at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Partial {
    /// An element of a per-series rule's result.
    Element { labels: Labels, value: f64 },
    /// A partial aggregate of one group.
    Group { group: Labels, acc: Acc },
    /// An `absent_over_time` selector saw a sample in its range.
    Present,
}

impl Partial {
    /// The labels that decide where stage two merges it (the repartition key).
    pub fn key(&self) -> Option<&Labels> {
        match self {
            Partial::Element { labels, .. } => Some(labels),
            Partial::Group { group, .. } => Some(group),
            Partial::Present => None,
        }
    }
}

struct SeriesState {
    labels: Labels,
    points: VecDeque<Point>,
    /// Indexes of the rules whose selector matches (decided once, at first sight).
    rules: Vec<usize>,
    /// The longest range its rules read (0 when they only take the latest sample): older
    /// samples are dropped but one.
    range_ms: i64,
    /// How old its newest sample may be and still be read (the lookback of an instant
    /// selector, or the longest range): older, the series is forgotten.
    reach_ms: i64,
}

/// Stage one's state: the recent samples of the series this reader owns.
pub struct SeriesStore {
    plans: Vec<Plan>,
    by_name: HashMap<String, Vec<usize>>,
    any_name: Vec<usize>,
    series: HashMap<Labels, SeriesState>,
    /// How long samples are kept behind the step being evaluated.
    horizon_ms: i64,
}

impl SeriesStore {
    pub fn new(plans: Vec<Plan>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_name = Vec::new();
        let mut horizon_ms = LOOKBACK_MS;
        for (i, p) in plans.iter().enumerate() {
            horizon_ms = horizon_ms.max(p.lookback_ms());
            match p.selector().metric_name() {
                Some(n) => by_name.entry(n.to_string()).or_default().push(i),
                None => any_name.push(i),
            }
        }
        Self {
            plans,
            by_name,
            any_name,
            series: HashMap::new(),
            horizon_ms,
        }
    }

    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds a sample; samples may arrive out of order (within the watermark's bound).
    pub fn push(&mut self, labels: &Labels, t: i64, v: f64) {
        if labels.is_empty() {
            // A series no rule selects by name (see `SampleDecoder`).
            return;
        }
        let state = match self.series.get_mut(labels) {
            Some(s) => s,
            None => {
                let name = labels.get(METRIC_NAME);
                let candidates = self.by_name.get(name).into_iter().flatten();
                let rules: Vec<usize> = candidates
                    .chain(self.any_name.iter())
                    .copied()
                    .filter(|&i| self.plans[i].selector().matches(labels))
                    .collect();
                if rules.is_empty() {
                    // No rule reads it: nothing to keep. (Not remembered either, so the
                    // store holds only what the rules need.)
                    return;
                }
                let range_ms = rules
                    .iter()
                    .map(|&i| self.plans[i].range_ms())
                    .max()
                    .unwrap_or(0);
                let reach_ms = rules
                    .iter()
                    .map(|&i| self.plans[i].lookback_ms())
                    .max()
                    .unwrap_or(0);
                self.series.entry(labels.clone()).or_insert(SeriesState {
                    labels: labels.clone(),
                    points: VecDeque::new(),
                    rules,
                    range_ms,
                    reach_ms,
                })
            }
        };
        let pos = state.points.partition_point(|p| p.0 <= t);
        if pos > 0 && state.points[pos - 1].0 == t {
            // The same timestamp again (a retry or a replay): the newer value wins.
            state.points[pos - 1].1 = v;
        } else {
            state.points.insert(pos, (t, v));
        }
    }

    /// Stage one at step `t`: the partials of every rule, by rule index.
    pub fn evaluate(&self, t: i64, out: &mut BTreeMap<usize, Vec<Partial>>) {
        self.evaluate_due(t, |_| true, out)
    }

    /// Stage one at step `t` for the rules `due` says are evaluated then (their group's
    /// interval divides `t`).
    pub fn evaluate_due(
        &self,
        t: i64,
        due: impl Fn(usize) -> bool,
        out: &mut BTreeMap<usize, Vec<Partial>>,
    ) {
        let mut groups: HashMap<(usize, Labels), Acc> = HashMap::new();
        // One buffer for every range read of this step, not an allocation per series.
        let mut scratch: Vec<Point> = Vec::new();
        for s in self.series.values() {
            for &r in &s.rules {
                if !due(r) {
                    continue;
                }
                match &self.plans[r] {
                    Plan::Series(e) => {
                        if let Some((value, drop_name)) = series_value(e, s, t, &mut scratch) {
                            let mut labels = s.labels.clone();
                            if drop_name {
                                labels.remove(METRIC_NAME);
                            }
                            out.entry(r)
                                .or_default()
                                .push(Partial::Element { labels, value });
                        }
                    }
                    Plan::Aggregate {
                        series, grouping, ..
                    } => {
                        if let Some((value, drop_name)) = series_value(series, s, t, &mut scratch) {
                            let mut key = grouping.key(&s.labels);
                            if drop_name {
                                // Only `by (__name__)` could have kept it.
                                key.remove(METRIC_NAME);
                            }
                            let acc = Acc::of(value);
                            groups
                                .entry((r, key))
                                .and_modify(|a| a.merge(&acc))
                                .or_insert(acc);
                        }
                    }
                    Plan::Absent { range_ms, .. } => {
                        if window(&s.points, t - range_ms, t).any(|p| !is_stale(p.1)) {
                            let v = out.entry(r).or_default();
                            if !v.contains(&Partial::Present) {
                                v.push(Partial::Present);
                            }
                        }
                    }
                }
            }
        }
        for ((r, group), acc) in groups {
            out.entry(r)
                .or_default()
                .push(Partial::Group { group, acc });
        }
    }

    /// Drops samples no step at or after `t` reads, and series left without any.
    pub fn trim(&mut self, t: i64) {
        self.series.retain(|_, s| {
            // Keep one sample before the range: an instant selector at `t` may still see
            // it when nothing newer came (it is within the lookback then).
            let keep_from = t - s.range_ms;
            while s.points.len() > 1 && s.points[1].0 < keep_from {
                s.points.pop_front();
            }
            s.points.back().is_some_and(|p| p.0 >= t - s.reach_ms)
        });
    }

    /// How long after its timestamp a sample may still be read by a step.
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    /// Samples held, over every series.
    pub fn sample_count(&self) -> usize {
        self.series.values().map(|s| s.points.len()).sum()
    }
}

/// Samples with `from <= ts <= to` (ranges are closed at both ends in Prometheus 2.42).
fn window(points: &VecDeque<Point>, from: i64, to: i64) -> impl Iterator<Item = &Point> {
    let start = points.partition_point(|p| p.0 < from);
    let end = points.partition_point(|p| p.0 <= to);
    points.range(start..end)
}

/// One series' value of a per-series expression at `t`, and whether the expression
/// dropped the metric name.
fn series_value(
    e: &SeriesExpr,
    s: &SeriesState,
    t: i64,
    pts: &mut Vec<Point>,
) -> Option<(f64, bool)> {
    let (value, dropped) = match e.inner {
        Inner::Instant => {
            let end = s.points.partition_point(|p| p.0 <= t);
            let &(ts, v) = s.points.get(end.checked_sub(1)?)?;
            if ts < t - LOOKBACK_MS || is_stale(v) {
                return None;
            }
            (v, false)
        }
        Inner::Range { func, range_ms } => {
            pts.clear();
            pts.extend(window(&s.points, t - range_ms, t).filter(|p| !is_stale(p.1)));
            let v = functions::range_fn(func, pts, t, range_ms)?;
            // Every range function drops the metric name but `last_over_time`.
            (v, func != crate::plan::RangeFn::Last)
        }
    };
    let (value, by_steps) = apply_steps(&e.steps, value)?;
    Some((value, dropped || by_steps))
}

/// Stage two: a rule's result vector at one step from the partials of every partition.
pub fn merge(plan: &Plan, partials: &[Partial]) -> Vec<(Labels, f64)> {
    match plan {
        Plan::Series(_) => {
            let mut out: Vec<(Labels, f64)> = partials
                .iter()
                .filter_map(|p| match p {
                    Partial::Element { labels, value } => Some((labels.clone(), *value)),
                    _ => None,
                })
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        Plan::Aggregate { op, steps, .. } => {
            let mut groups: BTreeMap<&Labels, Acc> = BTreeMap::new();
            for p in partials {
                if let Partial::Group { group, acc } = p {
                    groups
                        .entry(group)
                        .and_modify(|a| a.merge(acc))
                        .or_insert(*acc);
                }
            }
            groups
                .into_iter()
                .filter_map(|(g, acc)| {
                    let (v, drop_name) = apply_steps(steps, acc.value(*op))?;
                    let mut labels = g.clone();
                    if drop_name {
                        labels.remove(METRIC_NAME);
                    }
                    Some((labels, v))
                })
                .collect()
        }
        Plan::Absent { labels, steps, .. } => {
            if partials.contains(&Partial::Present) {
                return Vec::new();
            }
            // Its labels come from equality matchers: never a metric name to drop.
            match apply_steps(steps, 1.0) {
                Some((v, _)) => vec![(labels.clone(), v)],
                None => Vec::new(),
            }
        }
    }
}

/// Both stages in one process: every rule's result vector at `t`.
pub fn evaluate_all(store: &SeriesStore, t: i64) -> Vec<Vec<(Labels, f64)>> {
    let mut partials = BTreeMap::new();
    store.evaluate(t, &mut partials);
    store
        .plans()
        .iter()
        .enumerate()
        .map(|(i, p)| merge(p, partials.get(&i).map(Vec::as_slice).unwrap_or(&[])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_strs(pairs)
    }

    #[test]
    fn aggregation_across_stores_equals_one_store() {
        let plans = vec![
            Plan::parse("avg by (service) (temp) > 50").unwrap(),
            Plan::parse("temp > 60").unwrap(),
            Plan::parse("absent_over_time(temp{host=\"c\"}[1m])").unwrap(),
        ];
        let series = [
            (
                l(&[("__name__", "temp"), ("host", "a"), ("service", "x")]),
                40.0,
            ),
            (
                l(&[("__name__", "temp"), ("host", "b"), ("service", "x")]),
                70.0,
            ),
            (
                l(&[("__name__", "temp"), ("host", "c"), ("service", "y")]),
                30.0,
            ),
        ];
        let mut one = SeriesStore::new(plans.clone());
        let mut parts = [
            SeriesStore::new(plans.clone()),
            SeriesStore::new(plans.clone()),
        ];
        for (i, (labels, v)) in series.iter().enumerate() {
            one.push(labels, 1_000, *v);
            parts[i % 2].push(labels, 1_000, *v);
        }
        let whole = evaluate_all(&one, 60_000);
        let mut partials = BTreeMap::new();
        for p in &parts {
            p.evaluate(60_000, &mut partials);
        }
        for (i, plan) in plans.iter().enumerate() {
            let merged = merge(plan, partials.get(&i).map(Vec::as_slice).unwrap_or(&[]));
            assert_eq!(merged, whole[i], "rule {i}");
        }
        assert_eq!(whole[0], vec![(l(&[("service", "x")]), 55.0)]);
        assert_eq!(whole[1].len(), 1);
        assert!(whole[2].is_empty(), "host c spoke within the minute");
        // Two minutes later host c is silent for longer than the range.
        let later = evaluate_all(&one, 62_000 + 60_000);
        assert_eq!(later[2], vec![(l(&[("host", "c")]), 1.0)]);
    }

    #[test]
    fn instant_selector_looks_back_five_minutes_and_honours_stale_markers() {
        let plans = vec![Plan::parse("up").unwrap()];
        let mut s = SeriesStore::new(plans);
        let a = l(&[("__name__", "up"), ("job", "a")]);
        s.push(&a, 0, 1.0);
        assert_eq!(evaluate_all(&s, 300_000)[0].len(), 1);
        assert!(evaluate_all(&s, 300_001)[0].is_empty());
        s.push(&a, 10_000, f64::from_bits(STALE_NAN));
        assert!(evaluate_all(&s, 20_000)[0].is_empty());
    }
}
