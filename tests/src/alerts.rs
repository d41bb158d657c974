//! Alert events as the e2e tests compare them: what the in-process engine announces
//! against what is on an events topic.
use std::collections::BTreeMap;
use std::time::Duration;

use weir_alerter::alerting::Transition;
use weir_alerter::engine::Engine;
use weir_contract::avro::decode_alert_event;

use crate::read_topic;

/// (alertname, labels, status, startsAt, endsAt)
pub type Announced = (String, BTreeMap<String, String>, String, i64, Option<i64>);

/// The transitions `engine` makes advancing to `watermark`, as events would carry them,
/// sorted.
pub fn advance(engine: &mut Engine, watermark: i64) -> Vec<Announced> {
    let mut out: Vec<Announced> = engine
        .advance(watermark)
        .into_iter()
        .map(|(_, r, t)| {
            let name = engine.rule(r).name.clone();
            let (a, status) = match t {
                Transition::Firing(a) => (a, "firing"),
                Transition::Resolved(a) => (a, "resolved"),
            };
            let labels = a
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let ends = if status == "resolved" {
                a.resolved_at
            } else {
                None
            };
            let starts = a.fired_at.unwrap_or(a.active_at);
            (name, labels, status.to_string(), starts, ends)
        })
        .collect();
    out.sort();
    out
}

/// Every event on the events topic `topic`, decoded, sorted.
pub fn events(topic: &str, partitions: u32) -> Vec<Announced> {
    let records = read_topic(topic, partitions, Duration::from_secs(3), |_| false);
    let mut out: Vec<Announced> = records
        .iter()
        .map(|r| {
            let e = decode_alert_event(&r.payload).expect("an alert_event.v1 record");
            (e.alertname, e.labels, e.status, e.starts_at, e.ends_at)
        })
        .collect();
    out.sort();
    out
}

/// One event per line, for failure messages.
pub fn show(v: &[Announced]) -> String {
    v.iter()
        .map(|(n, l, s, a, e)| format!("  {s} {n} {l:?} startsAt={a} endsAt={e:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The events are exactly the expected ones: none missing, none repeated.
pub fn assert_same(got: &[Announced], expected: &[Announced]) {
    assert!(
        got == expected,
        "events differ from the engine's transitions\n-- on the events topic ({}):\n{}\n-- expected ({}):\n{}",
        got.len(),
        show(got),
        expected.len(),
        show(expected)
    );
}
