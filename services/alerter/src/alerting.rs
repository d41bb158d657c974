//! Alert state per rule, stepped on event time exactly as Prometheus' alerting rule
//! (`rules/alerting.go`): an element of the result becomes a pending alert, fires once
//! it has held for `for`, and resolves when it stops holding (after `keep_firing_for`).
//! A firing alert is announced once per episode; resolved alerts are kept 15 minutes so
//! the resolve reaches Alertmanager.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::{Labels, ALERT_NAME, METRIC_NAME};
use crate::rules::AlertRule;
use crate::template::Data;

/// How long a resolved alert is kept (and re-sent as resolved), as Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: State,
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    pub fn fingerprint(&self) -> u64 {
        self.labels.fingerprint()
    }

    /// The episode: fingerprint and the time it started firing.
    pub fn episode(&self) -> String {
        format!(
            "{:016x}-{}",
            self.fingerprint(),
            self.fired_at.unwrap_or(self.active_at)
        )
    }
}

/// A change worth announcing.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Firing(Alert),
    Resolved(Alert),
}

/// The alerts of one rule, by fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub active: BTreeMap<u64, Alert>,
}

impl RuleState {
    /// One evaluation at `t` with the rule's result vector; returns what fired and what
    /// resolved at this step.
    pub fn eval(
        &mut self,
        rule: &AlertRule,
        external_labels: &Labels,
        t: i64,
        result: &[(Labels, f64)],
    ) -> Vec<Transition> {
        let mut present: BTreeMap<u64, Alert> = BTreeMap::new();
        for (sample_labels, value) in result {
            let data = Data {
                labels: sample_labels,
                external_labels,
                value: *value,
            };
            let mut labels = sample_labels.clone();
            labels.remove(METRIC_NAME);
            for (name, tmpl) in &rule.labels {
                labels.set(name, &tmpl.expand(&data));
            }
            labels.set(ALERT_NAME, &rule.name);
            let annotations = Labels::new(
                rule.annotations
                    .iter()
                    .map(|(n, tmpl)| (n.clone(), tmpl.expand(&data)))
                    .collect(),
            );
            // Two elements with the same labels after templating: Prometheus fails the
            // evaluation; the first one wins here.
            present.entry(labels.fingerprint()).or_insert(Alert {
                labels,
                annotations,
                state: State::Pending,
                value: *value,
                active_at: t,
                fired_at: None,
                resolved_at: None,
                keep_firing_since: None,
            });
        }
        for (fp, a) in &present {
            match self.active.get_mut(fp) {
                Some(existing) if existing.state != State::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations.clone();
                }
                _ => {
                    self.active.insert(*fp, a.clone());
                }
            }
        }
        let mut out = Vec::new();
        let mut delete = Vec::new();
        for (fp, a) in self.active.iter_mut() {
            if !present.contains_key(fp) {
                let mut keep_firing = false;
                if a.state == State::Firing && rule.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    keep_firing = t - since < rule.keep_firing_for_ms;
                }
                if a.state == State::Pending
                    || a.resolved_at.is_some_and(|r| t - r > RESOLVED_RETENTION_MS)
                {
                    delete.push(*fp);
                }
                if a.state != State::Inactive && !keep_firing {
                    let was_firing = a.state == State::Firing;
                    a.state = State::Inactive;
                    a.resolved_at = Some(t);
                    if was_firing {
                        out.push(Transition::Resolved(a.clone()));
                    }
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            if a.state == State::Pending && t - a.active_at >= rule.for_ms {
                a.state = State::Firing;
                a.fired_at = Some(t);
                out.push(Transition::Firing(a.clone()));
            }
        }
        for fp in delete {
            self.active.remove(&fp);
        }
        out
    }

    /// The alerts firing now, sorted by labels.
    pub fn firing(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state == State::Firing)
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}
