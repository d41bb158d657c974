//! Stage one: where a metrics.raw partition is read, its series' recent samples are kept
//! and every rule is evaluated on them at each step, once the partition's watermark
//! passed the step (or, for a partition gone idle, the worker's frontier did).
//!
//! Each partition steps on its own: its store holds only its series, and its steps are
//! judged against its own watermark, so a partition re-read after a rebalance (far behind
//! the frontier, which never goes back) still sees all its samples before a step.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_contract::avro::{DecodeError, Decoder};
use weir_window::{Checkpoint, Cut, InputChecks, Item, Placement};

use crate::evaluate::{Partial, SeriesStore};
use crate::labels::{Labels, METRIC_NAME};
use crate::ruleset::RuleSet;

/// The items stage one reads: samples keyed by their labels.
pub type SampleItem = Item<Arc<Labels>, f64, ()>;

/// metrics.raw records to stage one's samples. A series whose metric name no rule
/// selects is handed on under one shared empty label set: its samples still move their
/// partition's watermark (which is every sample's, not only the rules'), and stage one
/// drops them at once. Building their labels, hashing them and matching them against the
/// rules per sample was most of stage one's work on a topic where few series are
/// alerted on.
pub struct SampleDecoder {
    decoder: Decoder,
    /// The metric names the rules select; `None` when a rule selects by labels alone.
    names: Option<HashSet<String>>,
    unread: Arc<Labels>,
    checks: InputChecks,
}

impl SampleDecoder {
    /// `checks`: see `alerter.max_sample_future` and `alerter.check_partition`.
    pub fn new(decoder: Decoder, rules: &RuleSet, checks: InputChecks) -> Self {
        Self {
            decoder,
            names: rules.metric_names(),
            unread: Arc::new(Labels::default()),
            checks,
        }
    }

    /// Appends the record's samples; returns how many of them no rule reads, and the
    /// samples cut from the record that break the contract or the event-time bound.
    pub fn decode(
        &mut self,
        payload: &[u8],
        placement: Option<Placement>,
        out: &mut Vec<(Arc<Labels>, i64, f64)>,
    ) -> Result<(usize, Option<Cut>), DecodeError> {
        let mut unread = 0;
        let (names, unread_labels, checks) = (&self.names, &self.unread, &mut self.checks);
        checks.start(placement);
        let r = self.decoder.visit(payload, |s| {
            let samples = checks.within(&s);
            if samples.is_empty() {
                return;
            }
            let labels = if names.as_ref().is_none_or(|n| n.contains(s.name)) {
                let mut pairs = Vec::with_capacity(s.labels.len() + 1);
                pairs.push((METRIC_NAME.to_string(), s.name.to_string()));
                pairs.extend(s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                Arc::new(Labels::new(pairs))
            } else {
                unread += samples.len();
                unread_labels.clone()
            };
            for x in samples {
                out.push((labels.clone(), x.timestamp_ms, x.value));
            }
        });
        match r {
            Ok(_) => Ok((unread, checks.finish())),
            Err(e) => {
                checks.reset();
                Err(e)
            }
        }
    }
}

/// One partition's partials of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub part: u32,
    pub step: i64,
    pub partials: Vec<(u32, Partial)>,
}

struct PartState {
    store: SeriesStore,
    watermark: Option<i64>,
    /// The next step to evaluate; unknown until the partition's time is.
    next: Option<i64>,
    /// The earliest sample seen while `next` is unknown: the first step is the first
    /// at or after it.
    first_ts: Option<i64>,
    last_evaluated: Option<i64>,
    last_seen: Instant,
}

/// What one absorb produced.
#[derive(Debug, Default)]
pub struct Absorbed {
    pub steps: Vec<StepOutput>,
    /// Samples at or before a step their partition already evaluated.
    pub late: u64,
}

pub struct StageOne {
    rules: Arc<RuleSet>,
    parts: HashMap<u32, PartState>,
    idle_timeout: Duration,
    max_catch_up_ms: i64,
}

impl StageOne {
    pub fn new(rules: Arc<RuleSet>, idle_timeout: Duration) -> Self {
        Self {
            rules,
            parts: HashMap::new(),
            idle_timeout,
            max_catch_up_ms: 3_600_000,
        }
    }

    /// A partition's first step is no earlier than `d` before the time its samples are
    /// complete to (default 1 h): one sample from long ago must not make it evaluate
    /// every step since, while its older samples still count in later steps' ranges.
    pub fn with_max_catch_up(mut self, d: Duration) -> Self {
        self.max_catch_up_ms = d.as_millis().min(i64::MAX as u128 / 4) as i64;
        self
    }

    fn part(&mut self, p: u32, now: Instant) -> &mut PartState {
        let rules = &self.rules;
        self.parts.entry(p).or_insert_with(|| PartState {
            store: rules.store(),
            watermark: None,
            next: None,
            first_ts: None,
            last_evaluated: None,
            last_seen: now,
        })
    }

    /// Takes what the source handed over and evaluates every step that became due.
    pub fn absorb(&mut self, items: Vec<SampleItem>, frontier: i64, now: Instant) -> Absorbed {
        let mut out = Absorbed::default();
        for item in items {
            match item {
                Item::Assigned(p, Checkpoint { watermark, .. }) => {
                    let next =
                        watermark.and_then(|a| self.rules.step_at_or_after(a.saturating_add(1)));
                    self.parts.remove(&p);
                    self.part(p, now).next = next;
                }
                Item::Revoked(p) => {
                    self.parts.remove(&p);
                }
                Item::Event(e) => {
                    let st = self.part(e.part, now);
                    if st.last_evaluated.is_some_and(|l| e.ts <= l) {
                        out.late += 1;
                    }
                    if st.next.is_none() {
                        st.first_ts = Some(st.first_ts.map_or(e.ts, |f| f.min(e.ts)));
                    }
                    st.store.push(&e.key, e.ts, e.value);
                    st.last_seen = now;
                }
                Item::Watermark(p, wm) => {
                    let st = self.part(p, now);
                    st.watermark = Some(st.watermark.map_or(wm, |w| w.max(wm)));
                    st.last_seen = now;
                }
                Item::Result(_) | Item::Late(_) => {}
            }
        }
        // MAX: the dataflow is being dropped at shutdown, not a real frontier.
        let frontier = (frontier != i64::MAX).then_some(frontier);
        let mut parts: Vec<u32> = self.parts.keys().copied().collect();
        parts.sort_unstable();
        for p in parts {
            self.step_partition(p, frontier, now, &mut out.steps);
        }
        out
    }

    fn step_partition(
        &mut self,
        p: u32,
        frontier: Option<i64>,
        now: Instant,
        out: &mut Vec<StepOutput>,
    ) {
        let rules = self.rules.clone();
        let idle_timeout = self.idle_timeout;
        let catch_up = self.max_catch_up_ms;
        let Some(st) = self.parts.get_mut(&p) else {
            return;
        };
        let idle = now.duration_since(st.last_seen) >= idle_timeout;
        // How far this partition's samples are complete: its own watermark, or the
        // frontier once it has been quiet for the idle timeout.
        let complete = match (st.watermark, frontier) {
            (Some(w), Some(f)) if idle => Some(w.max(f)),
            (Some(w), _) => Some(w),
            (None, Some(f)) if idle => Some(f),
            _ => None,
        };
        let Some(complete) = complete else { return };
        if st.next.is_none() {
            let earliest = complete.saturating_sub(catch_up);
            st.next = rules.step_at_or_after(st.first_ts.unwrap_or(complete).max(earliest));
        }
        let mut evaluated = false;
        while let Some(s) = st.next.filter(|s| *s <= complete) {
            let mut by_rule = BTreeMap::new();
            st.store.evaluate_due(s, |r| rules.due(r, s), &mut by_rule);
            let partials = by_rule
                .into_iter()
                .flat_map(|(r, v)| v.into_iter().map(move |p| (r as u32, p)))
                .collect();
            out.push(StepOutput {
                part: p,
                step: s,
                partials,
            });
            st.last_evaluated = Some(s);
            st.next = rules.step_at_or_after(s.saturating_add(1));
            evaluated = true;
        }
        if evaluated {
            if let Some(n) = st.next {
                st.store.trim(n);
            }
        }
    }

    /// Series and samples held, over every partition.
    pub fn held(&self) -> (usize, usize) {
        self.parts.values().fold((0, 0), |(a, b), s| {
            (a + s.store.series_count(), b + s.store.sample_count())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse_file;
    use std::path::Path;
    use weir_window::Event;

    fn rules() -> Arc<RuleSet> {
        let text =
            "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: Hot\n    expr: temp > 80\n";
        Arc::new(RuleSet::new(parse_file(Path::new("r.yml"), text).unwrap()))
    }

    fn ev(part: u32, host: &str, ts: i64, value: f64) -> SampleItem {
        Item::Event(Event {
            key: Arc::new(Labels::from_strs(&[("__name__", "temp"), ("host", host)])),
            part,
            ts,
            value,
            part_watermark: None,
        })
    }

    #[test]
    fn steps_follow_each_partitions_watermark_and_idle_partitions_follow_the_frontier() {
        let mut s = StageOne::new(rules(), Duration::from_secs(30));
        let t0 = Instant::now();
        let cp = Checkpoint::default();
        let items = vec![
            Item::Assigned(0, cp),
            Item::Assigned(1, cp),
            ev(0, "a", 1_000, 90.0),
            ev(1, "b", 1_000, 50.0),
            Item::Watermark(0, 25_000),
            Item::Watermark(1, 5_000),
        ];
        let out = s.absorb(items, 5_000, t0);
        // Partition 0 evaluated 10s and 20s; partition 1 is not at 10s yet.
        let steps: Vec<(u32, i64)> = out.steps.iter().map(|o| (o.part, o.step)).collect();
        assert_eq!(steps, vec![(0, 10_000), (0, 20_000)]);
        assert_eq!(out.steps[0].partials.len(), 1, "a > 80 at 10s");
        // Quiet for longer than the idle timeout: partition 1 follows the frontier.
        let out = s.absorb(vec![], 20_000, t0 + Duration::from_secs(31));
        let steps: Vec<(u32, i64)> = out.steps.iter().map(|o| (o.part, o.step)).collect();
        assert_eq!(steps, vec![(1, 10_000), (1, 20_000)]);
        assert!(out
            .steps
            .iter()
            .all(|o| o.part == 0 || o.partials.is_empty()));
        // A sample at a step already evaluated is counted late (and still kept).
        let out = s.absorb(
            vec![ev(0, "a", 9_000, 95.0)],
            20_000,
            t0 + Duration::from_secs(31),
        );
        assert_eq!(out.late, 1);
    }

    #[test]
    fn one_old_sample_does_not_make_a_partition_evaluate_every_step_since() {
        let mut s = StageOne::new(rules(), Duration::from_secs(30))
            .with_max_catch_up(Duration::from_secs(60));
        let day = 86_400_000;
        let out = s.absorb(
            vec![
                Item::Assigned(0, Checkpoint::default()),
                ev(0, "a", 1_000, 1.0),
                ev(0, "a", day, 1.0),
                Item::Watermark(0, day),
            ],
            0,
            Instant::now(),
        );
        let steps: Vec<i64> = out.steps.iter().map(|o| o.step).collect();
        assert_eq!(
            steps.first(),
            Some(&(day - 60_000)),
            "starts at the catch-up bound"
        );
        assert_eq!(steps.len(), 7, "{steps:?}");
    }

    #[test]
    fn a_checkpoint_resumes_after_the_acknowledged_step() {
        let mut s = StageOne::new(rules(), Duration::from_secs(30));
        let cp = Checkpoint {
            watermark: Some(20_000),
            ..Checkpoint::default()
        };
        let out = s.absorb(
            vec![
                Item::Assigned(3, cp),
                ev(3, "a", 25_000, 1.0),
                Item::Watermark(3, 45_000),
            ],
            0,
            Instant::now(),
        );
        let steps: Vec<i64> = out.steps.iter().map(|o| o.step).collect();
        assert_eq!(steps, vec![30_000, 40_000]);
    }

    fn series(name: &str, host: &str, ts: i64) -> weir_contract::Series {
        weir_contract::Series {
            name: name.into(),
            labels: vec![weir_contract::Label {
                name: "host".into(),
                value: host.into(),
            }],
            samples: vec![weir_contract::Sample {
                timestamp_ms: ts,
                value: 90.0,
            }],
            metric_type: Default::default(),
            unit: None,
            tenant: None,
        }
    }

    #[test]
    fn series_no_rule_selects_move_the_watermark_and_are_not_kept() {
        let payload = weir_contract::avro::BatchEncoder::encode(&weir_contract::MetricsBatch {
            series: vec![
                series("temp", "a", 1_000),
                series("disk_free", "a", 9_000),
                series("temp", "b", 2_000),
            ],
        });
        let mut decoder = SampleDecoder::new(
            Decoder::new(),
            &rules(),
            InputChecks::new(Duration::from_secs(600)),
        );
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&payload, None, &mut out).unwrap().0, 1);
        // Every sample's time is handed on, so the source's watermark sees 9 s.
        let times: Vec<i64> = out.iter().map(|s| s.1).collect();
        assert_eq!(times, vec![1_000, 9_000, 2_000]);
        assert!(out[1].0.is_empty());
        assert_eq!(out[0].0.get(METRIC_NAME), "temp");

        let mut stage = StageOne::new(rules(), Duration::from_secs(60));
        let items = out
            .into_iter()
            .map(|(key, ts, value)| {
                Item::Event(Event {
                    key,
                    part: 0,
                    ts,
                    value,
                    part_watermark: None,
                })
            })
            .collect();
        stage.absorb(items, 0, Instant::now());
        let store = &stage.parts[&0].store;
        assert_eq!((store.series_count(), store.sample_count()), (2, 2));
    }

    #[test]
    fn a_rule_selecting_by_labels_alone_reads_every_series() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: Any\n    expr: '{host=\"a\"} > 1'\n";
        let rules = RuleSet::new(parse_file(Path::new("r.yml"), text).unwrap());
        assert_eq!(rules.metric_names(), None);
        let payload = weir_contract::avro::BatchEncoder::encode(&weir_contract::MetricsBatch {
            series: vec![series("disk_free", "a", 9_000)],
        });
        let mut out = Vec::new();
        let (unread, _) = SampleDecoder::new(
            Decoder::new(),
            &rules,
            InputChecks::new(Duration::from_secs(600)),
        )
        .decode(&payload, None, &mut out)
        .unwrap();
        assert_eq!((unread, out[0].0.get(METRIC_NAME)), (0, "disk_free"));
    }
}
