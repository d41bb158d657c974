//! Stage two's logic for one partition of the repartition topic: gather each source
//! partition's partials of a step, and once every source partition has come past the
//! step, merge them per rule and step the rules' alert state.
//!
//! A source partition sends one record per step to every destination, so "has come past
//! step s" is "sent a record for a step at or after s". The first record of a
//! (source, step) wins: a source re-read after a restart or rebalance sends its steps
//! again, and the ones it re-sends from part of its samples come after the complete
//! originals in the log. A source's partials in several chunks count once every chunk
//! of one send is in (see `partials`).
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::alerting::{Alert, RuleState, State, Transition};
use crate::evaluate::{merge, Partial};
use crate::labels::Labels;
use crate::plan::Plan;
use crate::ruleset::RuleSet;
use crate::service::partials::{route, StepRecord};

#[derive(Debug, Default)]
struct PendingStep {
    from: HashSet<u32>,
    partials: BTreeMap<u32, Vec<Partial>>,
    /// Sources whose partials came in chunks not all in yet, by (source, send).
    chunked: HashMap<(u32, u64), Chunks>,
    first_offset: i64,
}

#[derive(Debug, Default)]
struct Chunks {
    seen: HashSet<u32>,
    partials: Vec<(u32, Partial)>,
}

/// What evaluating one step changed.
#[derive(Debug, Clone, Default)]
pub struct StepResult {
    pub step: i64,
    /// Rule index, transition, and whether an earlier run already announced it (its
    /// event is on the events topic after the last stored state).
    pub transitions: Vec<(usize, Transition, bool)>,
    /// Alerts whose stored state changed: rule index, fingerprint, the alert (`None`
    /// when it was dropped).
    pub changed: Vec<(usize, u64, Option<Alert>)>,
}

/// A transition's identity on the events topic: fingerprint, episode start, resolved.
pub type Announced = (u64, i64, bool);

pub fn announced(t: &Transition) -> Announced {
    match t {
        Transition::Firing(a) => (a.fingerprint(), a.fired_at.unwrap_or(a.active_at), false),
        Transition::Resolved(a) => (a.fingerprint(), a.fired_at.unwrap_or(a.active_at), true),
    }
}

/// What is kept of one destination partition in the state topic besides its alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeProgress {
    /// The last step evaluated.
    pub evaluated: Option<i64>,
    /// Per events-topic partition, the offset after this destination's last event when
    /// the state was stored: events after it may be announced already.
    pub events_from: Vec<(i32, i64)>,
}

type Signature = (State, i64, Option<i64>, Option<i64>, Option<i64>);

fn signature(a: &Alert) -> Signature {
    (
        a.state,
        a.active_at,
        a.fired_at,
        a.resolved_at,
        a.keep_firing_since,
    )
}

pub struct MergeState {
    /// This destination and how many there are: an `absent_over_time` rule is decided
    /// only where its presence partials meet.
    destination: u32,
    destinations: u32,
    pub states: Vec<RuleState>,
    pub progress: MergeProgress,
    /// Per source partition, the highest step it sent.
    sources: HashMap<u32, i64>,
    pending: BTreeMap<i64, PendingStep>,
    /// Most steps held waiting for a lagging source (memory stays bounded).
    pub max_pending: usize,
    /// Transitions already on the events topic (found when restoring).
    pub announced: HashSet<Announced>,
}

impl MergeState {
    pub fn new(rules: usize, destination: u32, destinations: u32) -> Self {
        Self {
            destination,
            destinations,
            states: vec![RuleState::default(); rules],
            progress: MergeProgress::default(),
            sources: HashMap::new(),
            pending: BTreeMap::new(),
            max_pending: 1_000,
            announced: HashSet::new(),
        }
    }

    /// The offset to resume from: the first record of a step not evaluated yet, or
    /// `position` (the next record to read).
    pub fn resume_offset(&self, position: i64) -> i64 {
        self.pending
            .values()
            .map(|p| p.first_offset)
            .min()
            .map_or(position, |o| o.min(position))
    }

    /// Steps waiting for a source partition.
    pub fn pending_steps(&self) -> usize {
        self.pending.len()
    }

    /// Takes one record (at `offset`) and evaluates every step it completed.
    pub fn absorb(
        &mut self,
        rules: &RuleSet,
        external_labels: &Labels,
        sources: u32,
        offset: i64,
        rec: StepRecord,
    ) -> Vec<StepResult> {
        // How far the source has come: past the step once its partials are all in.
        let mut reached = rec.step;
        if self.progress.evaluated.is_none_or(|e| rec.step > e) {
            let p = self.pending.entry(rec.step).or_insert_with(|| PendingStep {
                first_offset: offset,
                ..PendingStep::default()
            });
            if !p.from.contains(&rec.part) {
                let whole = if rec.chunks <= 1 {
                    Some(rec.partials)
                } else {
                    let c = p.chunked.entry((rec.part, rec.send)).or_default();
                    if c.seen.insert(rec.chunk) {
                        c.partials.extend(rec.partials);
                    }
                    if c.seen.len() as u32 >= rec.chunks {
                        let done = p.chunked.remove(&(rec.part, rec.send)).unwrap_or_default();
                        p.chunked.retain(|(source, _), _| *source != rec.part);
                        Some(done.partials)
                    } else {
                        reached = rec.step - 1;
                        None
                    }
                };
                if let Some(partials) = whole {
                    p.from.insert(rec.part);
                    for (rule, partial) in partials {
                        p.partials.entry(rule).or_default().push(partial);
                    }
                }
            }
        } else if !rec.partials.is_empty() {
            // Its step was evaluated already (without this source, see below).
            metrics::counter!("weir_alerter_partials_total", "outcome" => "after_step_evaluated")
                .increment(rec.partials.len() as u64);
        }
        let seen = self.sources.entry(rec.part).or_insert(reached);
        *seen = (*seen).max(reached);
        let mut out = Vec::new();
        while let Some((&step, _)) = self.pending.first_key_value() {
            let complete = (0..sources).all(|p| self.sources.get(&p).is_some_and(|s| *s >= step));
            if !complete {
                break;
            }
            let Some(p) = self.pending.remove(&step) else {
                break;
            };
            out.push(self.evaluate(rules, external_labels, step, p));
        }
        // A source that lags must not make the others' partials pile up without bound:
        // past `max_pending` the oldest step is evaluated with what is there, and says so.
        while self.pending.len() > self.max_pending {
            let Some((step, p)) = self.pending.pop_first() else {
                break;
            };
            let missing: Vec<u32> = (0..sources).filter(|s| !p.from.contains(s)).collect();
            metrics::counter!("weir_alerter_incomplete_steps_total").increment(1);
            tracing::warn!(
                step,
                ?missing,
                max_pending_steps = self.max_pending,
                "evaluating a step without the partials of lagging source partitions"
            );
            out.push(self.evaluate(rules, external_labels, step, p));
        }
        out
    }

    fn evaluate(
        &mut self,
        rules: &RuleSet,
        external_labels: &Labels,
        step: i64,
        p: PendingStep,
    ) -> StepResult {
        let mut r = StepResult {
            step,
            ..StepResult::default()
        };
        for i in 0..rules.len() {
            if !rules.due(i, step) {
                continue;
            }
            let rule = rules.rule(i);
            if matches!(rule.plan, Plan::Absent { .. })
                && route(i as u32, &Partial::Present, self.destinations) != self.destination
            {
                continue;
            }
            let before: HashMap<u64, Signature> = self.states[i]
                .active
                .iter()
                .map(|(fp, a)| (*fp, signature(a)))
                .collect();
            let result = merge(
                &rule.plan,
                p.partials
                    .get(&(i as u32))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            );
            for t in self.states[i].eval(rule, external_labels, step, &result) {
                let done = self.announced.remove(&announced(&t));
                r.transitions.push((i, t, done));
            }
            for (fp, a) in &self.states[i].active {
                if before.get(fp) != Some(&signature(a)) {
                    r.changed.push((i, *fp, Some(a.clone())));
                }
            }
            for fp in before.keys() {
                if !self.states[i].active.contains_key(fp) {
                    r.changed.push((i, *fp, None));
                }
            }
        }
        self.progress.evaluated = Some(step);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Acc;
    use crate::rules::parse_file;
    use std::path::Path;

    fn rules() -> RuleSet {
        let text = "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: HighAvg\n    expr: avg by (svc) (temp) > 50\n    for: 10s\n";
        RuleSet::new(parse_file(Path::new("r.yml"), text).unwrap())
    }

    fn rec(part: u32, step: i64, sum: f64, count: f64) -> StepRecord {
        let acc = Acc {
            sum,
            count,
            min: 0.0,
            max: 0.0,
        };
        StepRecord {
            part,
            step,
            send: 0,
            chunk: 0,
            chunks: 1,
            partials: vec![(
                0,
                Partial::Group {
                    group: Labels::from_strs(&[("svc", "api")]),
                    acc,
                },
            )],
        }
    }

    #[test]
    fn a_step_waits_for_every_source_and_the_first_record_wins() {
        let rules = rules();
        let ext = Labels::default();
        let mut m = MergeState::new(1, 0, 1);
        assert!(m
            .absorb(&rules, &ext, 2, 0, rec(0, 10_000, 100.0, 1.0))
            .is_empty());
        // A re-read of source 0 sends step 10s again from part of its samples: ignored.
        assert!(m
            .absorb(&rules, &ext, 2, 1, rec(0, 10_000, 0.0, 1.0))
            .is_empty());
        assert_eq!(m.resume_offset(2), 0);
        let r = m.absorb(&rules, &ext, 2, 2, rec(1, 10_000, 20.0, 1.0));
        assert_eq!(r.len(), 1);
        // avg = 60 > 50: pending, stored.
        assert!(r[0].transitions.is_empty());
        assert_eq!(r[0].changed.len(), 1);
        assert_eq!(m.resume_offset(3), 3);
        // Source 1 jumps ahead (it started later): step 20s waits only for source 0.
        assert!(m
            .absorb(&rules, &ext, 2, 3, rec(1, 30_000, 60.0, 1.0))
            .is_empty());
        let r = m.absorb(&rules, &ext, 2, 4, rec(0, 20_000, 120.0, 2.0));
        assert_eq!(r.len(), 1);
        assert!(matches!(
            r[0].transitions[..],
            [(0, Transition::Firing(_), false)]
        ));
        // Steps at or before the evaluated one are dropped.
        assert!(m
            .absorb(&rules, &ext, 2, 5, rec(0, 20_000, 0.0, 1.0))
            .is_empty());
        let r = m.absorb(&rules, &ext, 2, 6, rec(0, 30_000, 0.0, 1.0));
        assert!(matches!(
            r[0].transitions[..],
            [(0, Transition::Resolved(_), false)]
        ));
    }

    #[test]
    fn chunks_count_once_all_of_one_send_are_in_in_any_order() {
        let rules = rules();
        let ext = Labels::default();
        let mut m = MergeState::new(1, 0, 1);
        let chunk = |send, chunk, sum| StepRecord {
            send,
            chunk,
            chunks: 2,
            ..rec(0, 10_000, sum, 1.0)
        };
        // Source 1 is complete; source 0's second chunk comes first, then a chunk of
        // another send (a re-send computed from other samples), then its first.
        assert!(m
            .absorb(&rules, &ext, 2, 0, rec(1, 10_000, 60.0, 1.0))
            .is_empty());
        assert!(m.absorb(&rules, &ext, 2, 1, chunk(7, 1, 60.0)).is_empty());
        assert!(m.absorb(&rules, &ext, 2, 2, chunk(8, 0, 0.0)).is_empty());
        assert!(
            m.absorb(&rules, &ext, 2, 3, chunk(7, 1, 60.0)).is_empty(),
            "a duplicate"
        );
        let r = m.absorb(&rules, &ext, 2, 4, chunk(7, 0, 60.0));
        assert_eq!(r.len(), 1, "complete once both chunks of send 7 are in");
        // avg over (60 + 60 + 60) / 3 = 60 > 50: send 8's chunk and the duplicate were
        // not counted.
        assert_eq!(r[0].changed.len(), 1);
        // The rest of send 8 comes later: ignored, the step is done.
        assert!(m.absorb(&rules, &ext, 2, 5, chunk(8, 1, 0.0)).is_empty());
    }

    #[test]
    fn a_lagging_source_holds_at_most_max_pending_steps() {
        let rules = rules();
        let ext = Labels::default();
        let mut m = MergeState::new(1, 0, 1);
        m.max_pending = 3;
        // Source 1 never sends: steps pile up until the bound, then the oldest goes.
        let mut evaluated = Vec::new();
        for (i, step) in (1..=6).map(|k| k * 10_000).enumerate() {
            for r in m.absorb(&rules, &ext, 2, i as i64, rec(0, step, 100.0, 1.0)) {
                evaluated.push(r.step);
            }
            assert!(m.pending_steps() <= 3);
        }
        assert_eq!(evaluated, vec![10_000, 20_000, 30_000]);
        // The lagging source's partials for an evaluated step come too late: dropped.
        assert!(m
            .absorb(&rules, &ext, 2, 7, rec(1, 10_000, 0.0, 1.0))
            .is_empty());
    }

    #[test]
    fn a_transition_found_on_the_events_topic_is_not_announced_again() {
        let rules = rules();
        let ext = Labels::default();
        let mut m = MergeState::new(1, 0, 1);
        m.absorb(&rules, &ext, 1, 0, rec(0, 10_000, 60.0, 1.0));
        let mut copy = MergeState::new(1, 0, 1);
        copy.states = m.states.clone();
        copy.progress = m.progress.clone();
        let r = m.absorb(&rules, &ext, 1, 1, rec(0, 20_000, 60.0, 1.0));
        let (_, t, _) = &r[0].transitions[0];
        copy.announced.insert(announced(t));
        let again = copy.absorb(&rules, &ext, 1, 1, rec(0, 20_000, 60.0, 1.0));
        assert!(again[0].transitions[0].2, "already announced");
    }
}
