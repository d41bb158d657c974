//! `weir replay --into alerter`: backtesting. A rule file evaluated over a recorded range
//! on event time, as the live alerter evaluates it, reporting the alerts that would have
//! fired and resolved — before the rules are deployed, or to explain an incident.
//!
//! It runs the in-process [`Engine`] (the one `weir rules test` drives; the service runs
//! the same stages split across partitions): every sample a rule reads is pushed, and a
//! step is evaluated once every partition still being read came past it (its newest
//! sample minus `alerter.out_of_orderness`), as stage two waits for every partition.
//! Steps start a warm-up before the range, so an alert pending or firing when the range
//! begins is known as such; only transitions at steps inside the range are reported. It
//! notifies no one: the alerts go out as JSON lines, and as Avro events to a topic when
//! asked (`--to-topic`), never to `alerts.triggered` unless named.
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::message::Message;
use weir_contract::avro::{encode_alert_event, AlertEvent, AlertStatus};
use weir_runtime::backoff::Backoff;
use weir_runtime::input_checks::{InputChecks, Placement};
use weir_runtime::kafka::{producer_config, reader_config};
use weir_runtime::produce::{send_pending, OutRecord};
use weir_runtime::replay::range::show;
use weir_runtime::replay::reader::Polled;
use weir_runtime::replay::{BoundedReader, Counters, EventRange, RateLimit, StateFile};
use weir_runtime::Topology;

use crate::alerting::Transition;
use crate::engine::Engine;
use crate::labels::Labels;
use crate::ruleset::RuleSet;
use crate::service::stage_one::SampleDecoder;
use crate::service::stage_two::announced_alert;

pub struct Backtest {
    pub range: EventRange,
    pub rule_files: Vec<PathBuf>,
    pub state: StateFile,
    pub partitions: u32,
    pub counters: Arc<Counters>,
    pub max_rate: Option<u64>,
    pub warmup: Duration,
    /// Also write the alerts as Avro events (alert_event.v1, as `alerts.triggered`
    /// carries them) to this topic, keyed by fingerprint.
    pub to_topic: Option<String>,
}

/// The rules of a backtest, loaded as the alerter loads them.
pub fn load_rules(topology: &Topology, files: &[PathBuf]) -> anyhow::Result<RuleSet> {
    let cfg = &topology.alerter;
    if files.is_empty() {
        if cfg.rule_files.is_empty() && cfg.tenant_rule_files.is_empty() {
            anyhow::bail!("no rule file: give --rules FILE (alerter.rule_files and tenant_rule_files are empty too)");
        }
        return RuleSet::of_config(cfg).context("loading the rule files");
    }
    RuleSet::load(files, cfg.evaluation_interval.as_millis() as i64)
        .context("loading the rule files")
}

/// How long before the range a backtest starts evaluating by default: long enough for an
/// alert's `for` and `keep_firing_for`, plus the longest lookback of its expression.
pub fn default_warmup(rules: &RuleSet) -> Duration {
    let longest = rules
        .groups
        .iter()
        .flat_map(|g| {
            g.rules
                .iter()
                .map(move |r| r.for_ms + r.keep_firing_for_ms + 2 * g.interval_ms)
        })
        .max()
        .unwrap_or(0);
    Duration::from_millis((longest.max(0) + rules.store().horizon_ms().max(0)) as u64)
}

/// How far before the range records must be read: the warm-up and the lookback of the
/// first step it evaluates.
pub fn read_lead(rules: &RuleSet, warmup: Duration) -> Duration {
    warmup + Duration::from_millis(rules.store().horizon_ms().max(0) as u64)
}

/// Produces the backtest's events (acks=all), retrying what Kafka did not acknowledge.
fn write_events(
    topology: &Topology,
    topic: &str,
    mut events: Vec<OutRecord>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let spec = topology
        .topic(topic)
        .ok_or_else(|| anyhow::anyhow!("--to-topic {topic:?} is not declared under topics"))?;
    let producer: rdkafka::producer::FutureProducer = producer_config(&topology.kafka, spec)
        .create()
        .context("creating the events producer")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    rt.block_on(async {
        loop {
            match send_pending(&producer, topic, &mut events, Duration::from_secs(30)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_permanent() || stop.load(Ordering::Relaxed) => {
                    return Err(anyhow::Error::from(e).context("writing the backtest's events"))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "writing the backtest's events; retrying");
                    backoff.wait().await;
                }
            }
        }
    })
}

/// Runs the backtest, writing one JSON line per transition to `out`; `Ok(false)` when
/// stopped before the end.
pub fn run(
    topology: &Topology,
    b: Backtest,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> anyhow::Result<bool> {
    let rules = load_rules(topology, &b.rule_files)?;
    let cfg = &topology.alerter;
    let ooo = cfg.out_of_orderness.as_millis() as i64;
    let external = Labels::new(
        cfg.external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let eval_from = b.range.from_ms - b.warmup.as_millis() as i64;
    // Created at the first sample: steps before the data begins are not evaluated (an
    // `absent()` there would fire on nothing), as the live alerter starts with its data.
    let mut engine: Option<Engine> = None;
    let snapshot = b.state.snapshot().context("replay state lock poisoned")?;
    let parts: Vec<(u32, i64, i64)> = snapshot
        .partitions
        .iter()
        .map(|(p, s)| (*p, s.start, s.end))
        .collect();
    let mut reading: HashMap<u32, Option<i64>> = parts
        .iter()
        .filter(|(_, s, e)| s < e)
        .map(|(p, _, _)| (*p, None))
        .collect();
    let mut reader = BoundedReader::new(
        &reader_config(&topology.kafka, &format!("weir-backtest-{}", cfg.group)),
        &snapshot.topic,
        &parts,
    )
    .context("creating the replay reader")?;
    let checks = InputChecks::new(cfg.max_sample_future).check_partition(cfg.check_partition);
    let mut decoder = SampleDecoder::new(topology.decoder(), &rules, checks);
    let mut rate = b.max_rate.map(RateLimit::new);
    let (mut samples, mut newest) = (Vec::new(), i64::MIN);
    let mut events: Vec<OutRecord> = Vec::new();
    let mut report = |engine: &mut Engine,
                      watermark: i64,
                      out: &mut dyn Write|
     -> anyhow::Result<()> {
        for (step, r, t) in engine.advance(watermark) {
            if !b.range.contains(step) {
                continue;
            }
            let (a, status) = match &t {
                Transition::Firing(a) => (a, "firing"),
                Transition::Resolved(a) => (a, "resolved"),
            };
            let shown = announced_alert(a, &external);
            let rule = engine.rule(r);
            let starts = a.fired_at.unwrap_or(a.active_at);
            let ends = a.resolved_at.filter(|_| status == "resolved");
            let line = serde_json::json!({
                "alertname": rule.name,
                "status": status,
                "labels": shown.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "annotations": shown.annotations.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "value": a.value,
                "step": show(step),
                "step_ms": step,
                "starts_at": show(starts),
                "starts_at_ms": starts,
                "ends_at": ends.map(show),
                "ends_at_ms": ends,
                "group": engine.groups()[r.group].name,
                "expr": rule.expr,
            });
            writeln!(out, "{line}").context("writing the backtest's alerts")?;
            Counters::add(&b.counters.written, 1);
            if b.to_topic.is_some() {
                let pairs = |l: &Labels| -> Vec<(String, String)> {
                    l.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                };
                let (labels, annotations) = (pairs(&shown.labels), pairs(&shown.annotations));
                let fp = format!("{:016x}", shown.fingerprint());
                let payload = encode_alert_event(&AlertEvent {
                    status: if status == "firing" {
                        AlertStatus::Firing
                    } else {
                        AlertStatus::Resolved
                    },
                    alertname: &rule.name,
                    labels: &labels,
                    annotations: &annotations,
                    value: a.value,
                    starts_at: starts,
                    ends_at: ends,
                    fingerprint: &fp,
                    episode: &shown.episode(),
                    group: &engine.groups()[r.group].name,
                    expr: &rule.expr,
                });
                events.push(OutRecord::keyed(fp.into_bytes(), payload));
            }
        }
        Ok(())
    };
    let mut since_advance = 0usize;
    loop {
        if stop.load(Ordering::Relaxed) {
            out.flush().ok();
            return Ok(false);
        }
        if rate.as_mut().is_some_and(RateLimit::pace_blocking) {
            continue;
        }
        let m = match reader.poll(Duration::from_millis(100)) {
            Polled::Done => break,
            Polled::Nothing => continue,
            Polled::Record(m) => m,
        };
        let part = m.partition() as u32;
        samples.clear();
        let placement = Some(Placement {
            partition: part,
            partitions: b.partitions,
        });
        if decoder
            .decode(m.payload().unwrap_or_default(), placement, &mut samples)
            .is_err()
        {
            Counters::add(&b.counters.undecodable, 1);
        }
        Counters::add(&b.counters.records, 1);
        Counters::add(&b.counters.samples_read, samples.len() as u64);
        if let Some(r) = rate.as_mut() {
            r.take(samples.len());
        }
        let mut kept = 0;
        for (labels, ts, v) in samples.drain(..) {
            // Every sample moves event time, as in the live alerter's source.
            let e = reading.entry(part).or_insert(None);
            *e = Some(e.map_or(ts, |x| x.max(ts)));
            newest = newest.max(ts);
            // Series no rule reads come with empty labels.
            if labels.get("__name__").is_empty() {
                continue;
            }
            if b.range.contains(ts) {
                kept += 1;
            }
            engine
                .get_or_insert_with(|| {
                    Engine::new(rules.groups.clone(), Labels::default(), eval_from.max(ts))
                })
                .push(&labels, ts, v);
        }
        Counters::add(&b.counters.samples_kept, kept);
        // A partition whose records are all read no longer holds the steps back.
        if !reader.is_reading(part) {
            reading.remove(&part);
        }
        since_advance += 1;
        if since_advance >= 64 {
            since_advance = 0;
            // Every partition still read came past the step (partitions without a sample
            // yet hold everything back).
            if let Some(wm) = reading
                .values()
                .map(|m| m.map(|m| m - ooo))
                .try_fold(i64::MAX, |acc, m| m.map(|m| acc.min(m)))
            {
                if let (Some(e), true) = (engine.as_mut(), wm != i64::MAX) {
                    report(e, wm.min(b.range.to_ms - 1), out)?;
                }
            }
        }
    }
    // The end: every step the data covers, up to the range's end.
    if let Some(e) = engine.as_mut() {
        report(e, (newest - ooo).min(b.range.to_ms - 1), out)?;
    }
    out.flush().ok();
    if let Some(topic) = &b.to_topic {
        write_events(topology, topic, events, stop)?;
    }
    Ok(true)
}
