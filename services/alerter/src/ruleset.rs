//! The rules a deployment evaluates, flattened: every rule of every file and group gets
//! an index, the one both stages and the state topic use.
use std::collections::{BTreeMap, HashSet};
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
        Self::load_scoped(files, &BTreeMap::new(), "", default_interval_ms)
    }

    /// Loads `files`, then each tenant's files scoped to it (`label="tenant"` on every
    /// selector and alert).
    pub fn load_scoped(
        files: &[PathBuf],
        tenant_files: &BTreeMap<String, Vec<PathBuf>>,
        label: &str,
        default_interval_ms: i64,
    ) -> Result<Self, RuleError> {
        let mut groups = Vec::new();
        for f in files {
            groups.extend(load_file_with_interval(f, default_interval_ms)?);
        }
        for (tenant, files) in tenant_files {
            for f in files {
                for mut g in load_file_with_interval(f, default_interval_ms)? {
                    g.scope_to(label, tenant)?;
                    groups.push(g);
                }
            }
        }
        Ok(Self::new(groups))
    }

    /// The rules of `alerter.rule_files` and `alerter.tenant_rule_files`.
    pub fn of_config(cfg: &weir_runtime::config::AlerterConfig) -> Result<Self, RuleError> {
        Self::load_scoped(
            &cfg.rule_files,
            &cfg.tenant_rule_files,
            &cfg.tenant_label,
            cfg.evaluation_interval.as_millis() as i64,
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    #[test]
    fn tenant_rule_files_see_their_tenant_only() {
        let dir = std::env::temp_dir().join(format!("weir-ruleset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shared = dir.join("shared.yml");
        let acme = dir.join("acme.yml");
        std::fs::write(
            &shared,
            "groups:\n- name: g\n  rules:\n  - alert: Hot\n    expr: temp > 80\n",
        )
        .unwrap();
        // A tenant's rule that names another tenant still selects nothing of it, and
        // cannot label its alerts as another tenant's.
        std::fs::write(
            &acme,
            "groups:\n- name: g\n  rules:\n  - alert: Hot\n    expr: temp{tenant=\"globex\"} > 80\n    labels: {tenant: globex}\n  - alert: Cold\n    expr: min by (host) (temp) < 0\n    labels: {severity: page}\n  - alert: Gone\n    expr: absent_over_time(temp{host=\"a\"}[5m])\n",
        )
        .unwrap();
        let tenants = BTreeMap::from([("acme".to_string(), vec![acme.clone()])]);
        let rules = RuleSet::load_scoped(&[shared], &tenants, "tenant", 60_000).unwrap();
        assert_eq!(rules.len(), 4);
        let series = |tenant: &str| {
            Labels::from_strs(&[("__name__", "temp"), ("host", "a"), ("tenant", tenant)])
        };
        // The shared rule sees every tenant.
        let s = rules.rule(0).plan.selector();
        assert!(s.matches(&series("acme")) && s.matches(&series("globex")));
        // acme's rules see acme's series only.
        let hot = rules.rule(1);
        assert!(!hot.plan.selector().matches(&series("globex")));
        assert!(!hot.plan.selector().matches(&series("acme")));
        let cold = rules.rule(2);
        assert!(cold.plan.selector().matches(&series("acme")));
        assert!(!cold.plan.selector().matches(&series("globex")));
        assert!(!cold
            .plan
            .selector()
            .matches(&Labels::from_strs(&[("__name__", "temp"), ("host", "a")])));
        // Their alerts carry the tenant, whatever the rule said.
        let label = |r: &AlertRule, k: &str| {
            r.labels
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, t)| format!("{t:?}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(label(hot, "tenant").len(), 1);
        assert!(
            label(hot, "tenant")[0].contains("acme"),
            "{:?}",
            label(hot, "tenant")
        );
        assert!(label(cold, "tenant")[0].contains("acme"));
        assert_eq!(label(cold, "severity").len(), 1);
        let gone = rules.rule(3);
        assert!(gone.plan.selector().matches(&series("acme")));
        assert!(!gone.plan.selector().matches(&series("globex")));
        std::fs::remove_dir_all(&dir).ok();
    }
}
