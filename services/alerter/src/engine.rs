//! The alerter's engine in one process: samples in, steps evaluated as the watermark
//! passes them, transitions out. `weir rules test` drives it; the service runs the same
//! stages split across partitions (stage one per partition, stage two per rule/group).
use std::collections::BTreeMap;

use crate::alerting::{RuleState, Transition};
use crate::evaluate::{merge, SeriesStore};
use crate::labels::Labels;
use crate::rules::{AlertRule, Group};

/// Where a rule sits: group index and rule index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub group: usize,
    pub rule: usize,
}

pub struct Engine {
    groups: Vec<Group>,
    /// Flattened rules, in group order.
    refs: Vec<RuleRef>,
    store: SeriesStore,
    states: Vec<RuleState>,
    external_labels: Labels,
    /// The next step of each group (steps are multiples of the group's interval).
    next_step: Vec<Option<i64>>,
    /// Evaluate from here on (the first step at or after it).
    start: i64,
}

impl Engine {
    pub fn new(groups: Vec<Group>, external_labels: Labels, start: i64) -> Self {
        let mut refs = Vec::new();
        let mut plans = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for (r, rule) in group.rules.iter().enumerate() {
                refs.push(RuleRef { group: g, rule: r });
                plans.push(rule.plan.clone());
            }
        }
        let n = refs.len();
        let next_step = vec![None; groups.len()];
        Self {
            groups,
            refs,
            store: SeriesStore::new(plans),
            states: vec![RuleState::default(); n],
            external_labels,
            next_step,
            start,
        }
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn rule(&self, r: RuleRef) -> &AlertRule {
        &self.groups[r.group].rules[r.rule]
    }

    pub fn push(&mut self, labels: &Labels, t: i64, v: f64) {
        self.store.push(labels, t, v);
    }

    /// Every rule with the state of its alerts, in group order.
    pub fn rules(&self) -> impl Iterator<Item = (&AlertRule, &RuleState)> {
        self.refs
            .iter()
            .zip(&self.states)
            .map(|(r, s)| (self.rule(*r), s))
    }

    /// Evaluates every step at or before `watermark` not evaluated yet, in time order
    /// (groups in file order within a step), and returns what fired and resolved.
    pub fn advance(&mut self, watermark: i64) -> Vec<(i64, RuleRef, Transition)> {
        let mut out = Vec::new();
        loop {
            // The earliest due step over all groups.
            let mut due: Option<i64> = None;
            for (g, group) in self.groups.iter().enumerate() {
                let step = *self.next_step[g]
                    .get_or_insert_with(|| first_step(self.start, group.interval_ms));
                if step <= watermark {
                    due = Some(due.map_or(step, |d: i64| d.min(step)));
                }
            }
            let Some(t) = due else { break };
            let mut partials = BTreeMap::new();
            self.store.evaluate(t, &mut partials);
            for (g, group) in self.groups.iter().enumerate() {
                if self.next_step[g] != Some(t) {
                    continue;
                }
                self.next_step[g] = Some(t + group.interval_ms);
                for (i, r) in self.refs.iter().enumerate().filter(|(_, r)| r.group == g) {
                    let rule = &group.rules[r.rule];
                    let result = merge(
                        &rule.plan,
                        partials.get(&i).map(Vec::as_slice).unwrap_or(&[]),
                    );
                    for tr in self.states[i].eval(rule, &self.external_labels, t, &result) {
                        out.push((t, *r, tr));
                    }
                }
            }
        }
        // Keep what later steps still read.
        if let Some(next) = self.next_step.iter().flatten().min() {
            self.store.trim(*next);
        }
        out
    }
}

/// The first multiple of `interval` at or after `start`.
fn first_step(start: i64, interval: i64) -> i64 {
    start.div_euclid(interval) * interval
        + if start.rem_euclid(interval) == 0 {
            0
        } else {
            interval
        }
}
