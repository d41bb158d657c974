//! The state topic (`alerts.state`, compacted): per destination partition of the
//! repartition topic, every alert that is pending, firing or recently resolved, and the
//! last step evaluated. Written after each evaluated step (after its events); read back
//! when the partition is assigned, so a restart or rebalance resumes the alerts where
//! they were.
//!
//! Keys: `<q>/alert/<rule index>/<fingerprint>` (value: the rule's name and the alert;
//! a tombstone once the alert is dropped) and `<q>/progress`. Everything of destination
//! `q` goes to state partition `q % partitions`, so a restore reads one partition.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::alerting::Alert;
use crate::ruleset::RuleSet;
use crate::service::merge::{MergeProgress, MergeState};

/// Headers on every event, so a restore finds what its destination announced.
pub const HEADER_DESTINATION: &str = "weir-merge-partition";
pub const HEADER_ANNOUNCED: &str = "weir-announced";

#[derive(Debug, Serialize, Deserialize)]
struct StoredAlert {
    rule: String,
    alert: Alert,
}

pub fn alert_key(q: i32, rule: usize, fp: u64) -> String {
    format!("{q}/alert/{rule}/{fp:016x}")
}

pub fn progress_key(q: i32) -> String {
    format!("{q}/progress")
}

pub fn encode_alert(rule: &str, alert: &Alert) -> Vec<u8> {
    bincode::serialize(&StoredAlert {
        rule: rule.to_string(),
        alert: alert.clone(),
    })
    .unwrap_or_default()
}

pub fn encode_progress(p: &MergeProgress) -> Vec<u8> {
    bincode::serialize(p).unwrap_or_default()
}

/// The rule name and alert of an alert record.
pub fn decode_alert(b: &[u8]) -> bincode::Result<(String, Alert)> {
    let s: StoredAlert = super::decode_bounded(b)?;
    Ok((s.rule, s.alert))
}

pub fn decode_progress(b: &[u8]) -> bincode::Result<MergeProgress> {
    super::decode_bounded(b)
}

/// `fingerprint/episode start/resolved` as written in [`HEADER_ANNOUNCED`].
pub fn announced_header(a: (u64, i64, bool)) -> String {
    format!("{:016x}/{}/{}", a.0, a.1, u8::from(a.2))
}

fn parse_announced(s: &str) -> Option<(u64, i64, bool)> {
    let mut it = s.split('/');
    let fp = u64::from_str_radix(it.next()?, 16).ok()?;
    let start = it.next()?.parse().ok()?;
    let resolved = it.next()? == "1";
    Some((fp, start, resolved))
}

/// Reads `topic`/`partition` from `from` to its current end, handing each record over.
fn read_to_end(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    from: Offset,
    timeout: Duration,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = config.create().context("creating a restore consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .with_context(|| format!("offsets of {topic}/{partition}"))?;
    let start = match from {
        Offset::Offset(o) => o.max(low),
        _ => low,
    };
    if high <= start {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("reading {topic}/{partition} up to offset {high} timed out");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let o = m.offset();
                each(&m);
                if o + 1 >= high {
                    return Ok(());
                }
            }
            Some(Err(e)) => tracing::warn!(topic, partition, error = %e, "restoring"),
            None => {}
        }
    }
}

/// Reads back destination `q`'s alerts and progress, and which transitions its last
/// run announced after storing them.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    config: &ClientConfig,
    rules: &RuleSet,
    state_topic: &str,
    state_partitions: u32,
    events_topic: &str,
    events_partitions: u32,
    q: i32,
    destinations: u32,
) -> anyhow::Result<MergeState> {
    let timeout = Duration::from_secs(60);
    let mut st = MergeState::new(rules.len(), q as u32, destinations);
    let prefix = format!("{q}/");
    let mut alerts = 0usize;
    let mut dropped = 0usize;
    read_to_end(
        config,
        state_topic,
        q.rem_euclid(state_partitions.max(1) as i32),
        Offset::Beginning,
        timeout,
        |m| {
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                return;
            };
            let Some(rest) = key.strip_prefix(&prefix) else {
                return;
            };
            if rest == "progress" {
                if let Some(p) = m.payload().and_then(|b| decode_progress(b).ok()) {
                    st.progress = p;
                }
                return;
            }
            let mut parts = rest.split('/');
            let (Some("alert"), Some(rule), Some(fp)) = (parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            let (Ok(rule), Ok(fp)) = (rule.parse::<usize>(), u64::from_str_radix(fp, 16)) else {
                return;
            };
            if rule >= rules.len() {
                dropped += 1;
                return;
            }
            match m.payload() {
                None => {
                    st.states[rule].active.remove(&fp);
                }
                Some(b) => match decode_alert(b) {
                    // Rule files changed since: a rule at this index by another name is
                    // another rule.
                    Ok((name, alert)) if name == rules.rule(rule).name => {
                        st.states[rule].active.insert(fp, alert);
                    }
                    _ => dropped += 1,
                },
            }
        },
    )?;
    for s in &st.states {
        alerts += s.active.len();
    }
    // What was announced after the state was stored: the events from the stored
    // positions on, of this destination.
    let from: HashMap<i32, i64> = st.progress.events_from.iter().copied().collect();
    let consumer: BaseConsumer = config.create().context("creating a restore consumer")?;
    let mut events_from = Vec::new();
    for p in 0..events_partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(events_topic, p, timeout)
            .with_context(|| format!("offsets of {events_topic}/{p}"))?;
        if let Some(&o) = from.get(&p) {
            let qs = q.to_string();
            read_to_end(config, events_topic, p, Offset::Offset(o), timeout, |m| {
                let Some(h) = m.headers() else { return };
                let mut mine = false;
                let mut ann = None;
                for h in h.iter() {
                    let v = h.value.and_then(|v| std::str::from_utf8(v).ok());
                    match h.key {
                        HEADER_DESTINATION => mine = v == Some(qs.as_str()),
                        HEADER_ANNOUNCED => ann = v.and_then(parse_announced),
                        _ => {}
                    }
                }
                if let (true, Some(a)) = (mine, ann) {
                    st.announced.insert(a);
                }
            })?;
        }
        events_from.push((p, high.max(from.get(&p).copied().unwrap_or(0))));
    }
    st.progress.events_from = events_from;
    tracing::info!(
        partition = q,
        alerts,
        dropped,
        evaluated = ?st.progress.evaluated,
        announced_after_state = st.announced.len(),
        "alert state restored"
    );
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_header_round_trips() {
        let a = (0xdead_beef_u64, 1_700_000_000_000, true);
        assert_eq!(parse_announced(&announced_header(a)), Some(a));
        assert_eq!(parse_announced("zz/1/0"), None);
    }
}
