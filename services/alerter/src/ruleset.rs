//! The rules a deployment evaluates, flattened: every rule of every file and group gets
//! an index, the one both stages and the state topic use.
use std::collections::HashSet;
use std::path::PathBuf;

use crate::evaluate::SeriesStore;
use crate::rules::{load_file_with_interval, AlertRule, Group, RuleError};

pub struct RuleSet {
    pub groups: Vec<Group>,
    /// Per rule index: group index and rule index within it.
    refs: Vec<(usize, usize)>,
}

impl RuleSet {
    pub fn new(groups: Vec<Group>) -> Self {
        let refs = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| (0..group.rules.len()).map(move |r| (g, r)))
            .collect();
        Self { groups, refs }
    }

    /// Loads rule files in order; groups without an interval get `default_interval_ms`.
    pub fn load(files: &[PathBuf], default_interval_ms: i64) -> Result<Self, RuleError> {
        let mut groups = Vec::new();
        for f in files {
            groups.extend(load_file_with_interval(f, default_interval_ms)?);
        }
        Ok(Self::new(groups))
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    pub fn rule(&self, i: usize) -> &AlertRule {
        let (g, r) = self.refs[i];
        &self.groups[g].rules[r]
    }

    pub fn group(&self, i: usize) -> &Group {
        &self.groups[self.refs[i].0]
    }

    /// Whether rule `i` is evaluated at step `t` (its group's interval divides `t`).
    pub fn due(&self, i: usize, t: i64) -> bool {
        t.rem_euclid(self.group(i).interval_ms) == 0
    }

    /// A stage-one store for these rules.
    pub fn store(&self) -> SeriesStore {
        SeriesStore::new((0..self.len()).map(|i| self.rule(i).plan.clone()).collect())
    }

    /// The metric names the rules select, or `None` if a rule selects series by their
    /// labels alone (then every series may be read).
    pub fn metric_names(&self) -> Option<HashSet<String>> {
        (0..self.len())
            .map(|i| {
                self.rule(i)
                    .plan
                    .selector()
                    .metric_name()
                    .map(str::to_string)
            })
            .collect()
    }

    /// The first step of any group at or after `t`.
    pub fn step_at_or_after(&self, t: i64) -> Option<i64> {
        self.groups
            .iter()
            .map(|g| {
                let i = g.interval_ms;
                t.div_euclid(i) * i + if t.rem_euclid(i) == 0 { 0 } else { i }
            })
            .min()
    }

    /// The longest group interval.
    pub fn max_interval_ms(&self) -> i64 {
        self.groups.iter().map(|g| g.interval_ms).max().unwrap_or(0)
    }
}
