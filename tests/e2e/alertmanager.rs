//! The alerter's Alertmanager path against the real Alertmanager of the local stack:
//! a firing alert becomes active, periodic re-sends keep it so, and the resolve (endsAt
//! at the resolve time) ends it.
use std::time::Duration;

use weir_alerter::alerting::{Alert, State};
use weir_alerter::alertmanager::AlertmanagerClient;
use weir_alerter::labels::Labels;
use weir_alerter::notify::{now_ms, Notifier};
use weir_e2e::*;

const AM: &str = "http://127.0.0.1:9093";

/// Alerts Alertmanager holds for `test` (active and resolved), as (state, endsAt).
fn am_alerts(test: &str) -> Vec<serde_json::Value> {
    let url = format!("{AM}/api/v2/alerts?filter=test%3D%22{test}%22");
    let v: serde_json::Value = client().get(url).send().unwrap().json().unwrap();
    v.as_array().cloned().unwrap_or_default()
}

fn active(test: &str) -> usize {
    am_alerts(test)
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .count()
}

#[test]
fn firing_alert_is_active_in_alertmanager_until_resolved() {
    ensure_stack();
    let test = format!("am-{}-{}", std::process::id(), now_ms());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let am = AlertmanagerClient::new(
        vec![AM.into()],
        Duration::from_secs(5),
        &Default::default(),
        Default::default(),
    )
    .unwrap();
    let mut n = Notifier::new(Duration::from_secs(60), Duration::from_secs(5));
    let fired = now_ms() - 30_000;
    let mut a = Alert {
        labels: Labels::from_strs(&[
            ("alertname", "DeviceOverheating"),
            ("device", "dev-00001"),
            ("test", &test),
        ]),
        annotations: Labels::from_strs(&[("summary", "dev-00001 at 91 °C")]),
        state: State::Firing,
        value: 91.0,
        active_at: fired - 60_000,
        fired_at: Some(fired),
        resolved_at: None,
        keep_firing_since: None,
    };
    n.firing(&a, "");
    let send = |n: &mut Notifier, rt: &tokio::runtime::Runtime| {
        let now = now_ms();
        let due = n.due(now);
        let alerts: Vec<_> = due.iter().map(|d| d.1.clone()).collect();
        rt.block_on(am.send(&alerts)).unwrap();
        n.sent(&due.iter().map(|d| d.0).collect::<Vec<_>>(), now);
        due.len()
    };
    assert_eq!(send(&mut n, &rt), 1);
    wait_until(
        "the alert active in Alertmanager",
        Duration::from_secs(30),
        || active(&test) == 1,
    );
    let got = &am_alerts(&test)[0];
    assert_eq!(got["labels"]["device"], "dev-00001");
    assert_eq!(got["annotations"]["summary"], "dev-00001 at 91 °C");
    assert_eq!(send(&mut n, &rt), 0, "not re-sent before the resend delay");

    a.state = State::Inactive;
    a.resolved_at = Some(now_ms() - 1_000);
    n.resolved(&a, "", now_ms());
    assert_eq!(send(&mut n, &rt), 1);
    wait_until(
        "the alert resolved in Alertmanager",
        Duration::from_secs(30),
        || active(&test) == 0,
    );
}
