//! What goes to Alertmanager, and when: Prometheus' `sendAlerts` on wall-clock time.
//!
//! A firing alert is sent at once and re-sent every `resend_delay` with `endsAt` =
//! now + 4·max(resend_delay, group interval), so Alertmanager keeps it active as long as
//! the alerter runs and expires it if the alerter goes away. A resolved alert is sent
//! at once with `endsAt` = the resolve time, then re-sent like a firing one for 15
//! minutes so a restarted Alertmanager learns it too. An alert stays due until a send
//! succeeded.
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::alerting::{Alert, RESOLVED_RETENTION_MS};
use crate::labels::Labels;

/// One alert in Alertmanager's v2 API (`POST /api/v2/alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    generator_url: String,
    last_sent: Option<i64>,
    /// Wall-clock time of the resolve; the alert is forgotten 15 minutes later.
    resolved_wall: Option<i64>,
    resolve_sent: bool,
}

pub struct Notifier {
    resend_ms: i64,
    valid_for_ms: i64,
    alerts: BTreeMap<u64, Tracked>,
}

impl Notifier {
    pub fn new(resend_delay: Duration, group_interval: Duration) -> Self {
        let resend_ms = resend_delay.as_millis() as i64;
        Self {
            resend_ms,
            valid_for_ms: 4 * resend_ms.max(group_interval.as_millis() as i64),
            alerts: BTreeMap::new(),
        }
    }

    /// The alert fired, or its value or annotations changed while firing.
    pub fn firing(&mut self, a: &Alert, generator_url: &str) {
        self.track(a, generator_url).resolved_wall = None;
    }

    /// The alert resolved at event time `a.resolved_at`.
    pub fn resolved(&mut self, a: &Alert, generator_url: &str, now: i64) {
        self.track(a, generator_url).resolved_wall = Some(now);
    }

    /// The tracked entry of `a`, updated to it and due to announce a resolve again.
    fn track(&mut self, a: &Alert, generator_url: &str) -> &mut Tracked {
        let e = self.alerts.entry(a.fingerprint()).or_insert(Tracked {
            alert: a.clone(),
            generator_url: generator_url.to_string(),
            last_sent: None,
            resolved_wall: None,
            resolve_sent: false,
        });
        e.alert = a.clone();
        e.resolve_sent = false;
        e
    }

    /// Stops tracking an alert (another member owns it now).
    pub fn forget(&mut self, fp: u64) {
        self.alerts.remove(&fp);
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Alerts to send now, with their fingerprints for [`Notifier::sent`].
    pub fn due(&mut self, now: i64) -> Vec<(u64, AmAlert)> {
        self.alerts.retain(|_, t| {
            !(t.resolve_sent
                && t.resolved_wall
                    .is_some_and(|r| now - r > RESOLVED_RETENTION_MS))
        });
        let mut out = Vec::new();
        for (fp, t) in &self.alerts {
            let resolved = t.resolved_wall.is_some();
            let send = (resolved && !t.resolve_sent)
                || t.last_sent.is_none_or(|s| s + self.resend_ms < now);
            if !send {
                continue;
            }
            let starts = t.alert.fired_at.unwrap_or(t.alert.active_at);
            let ends = match (resolved, t.alert.resolved_at) {
                (true, Some(r)) => r,
                _ => now + self.valid_for_ms,
            };
            out.push((
                *fp,
                AmAlert {
                    labels: map(&t.alert.labels),
                    annotations: map(&t.alert.annotations),
                    starts_at: rfc3339(starts),
                    ends_at: rfc3339(ends),
                    generator_url: t.generator_url.clone(),
                },
            ));
        }
        out
    }

    /// The alerts were accepted by Alertmanager at `now`.
    pub fn sent(&mut self, fps: &[u64], now: i64) {
        for fp in fps {
            if let Some(t) = self.alerts.get_mut(fp) {
                t.last_sent = Some(now);
                if t.resolved_wall.is_some() {
                    t.resolve_sent = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::State;

    fn alert(fired: i64) -> Alert {
        Alert {
            labels: Labels::from_strs(&[("alertname", "Hot"), ("device", "d-1")]),
            annotations: Labels::from_strs(&[("summary", "hot")]),
            state: State::Firing,
            value: 90.0,
            active_at: fired - 60_000,
            fired_at: Some(fired),
            resolved_at: None,
            keep_firing_since: None,
        }
    }

    #[test]
    fn sends_at_once_resends_periodically_and_announces_the_resolve() {
        let mut n = Notifier::new(Duration::from_secs(60), Duration::from_secs(5));
        let a = alert(1_000_000);
        n.firing(&a, "");
        let now = 2_000_000;
        let d = n.due(now);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.starts_at, rfc3339(1_000_000));
        assert_eq!(d[0].1.ends_at, rfc3339(now + 240_000));
        // Not sent (Alertmanager down): still due.
        assert_eq!(n.due(now + 1_000).len(), 1);
        n.sent(&[d[0].0], now);
        assert!(
            n.due(now + 60_000).is_empty(),
            "resent only after the delay"
        );
        assert_eq!(n.due(now + 60_001).len(), 1);
        n.sent(&[d[0].0], now + 60_001);
        let mut r = a.clone();
        r.state = State::Inactive;
        r.resolved_at = Some(1_300_000);
        n.resolved(&r, "", now + 61_000);
        let d = n.due(now + 61_000);
        assert_eq!(d[0].1.ends_at, rfc3339(1_300_000));
        n.sent(&[d[0].0], now + 61_000);
        assert!(n.due(now + 62_000).is_empty());
        assert_eq!(n.due(now + 122_000).len(), 1, "resolved re-sent too");
        n.sent(&[d[0].0], now + 122_000);
        n.due(now + 61_000 + RESOLVED_RETENTION_MS + 1);
        assert!(n.is_empty(), "forgotten 15 minutes after the resolve");
    }
}
