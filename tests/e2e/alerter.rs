//! `weir alerter` end to end on the local stack: samples on a tansu topic → both stages
//! → events on the events topic and alerts in the real Alertmanager. The events must be
//! exactly the transitions of the in-process engine (the one `weir rules test` checks
//! against promtool) over the same samples — a per-series threshold, an aggregation whose
//! series sit on every partition, and an `absent_over_time` — with no duplicate and no
//! missing event, also when the alerter is killed with SIGKILL while alerts are pending
//! and firing, and when one of two members leaves.
use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_alerter::engine::Engine;
use weir_alerter::labels::Labels;
use weir_alerter::rules::parse_file;
use weir_contract::avro::BatchEncoder;
use weir_contract::partitioner::first_key_in_partition;
use weir_contract::series_key::parse_key;
use weir_contract::{Label, Sample, Series};
use weir_e2e::alerts::{self, assert_same, show, Announced};
use weir_e2e::*;

const AM: &str = "http://127.0.0.1:9093";
const PARTITIONS: u32 = 4;
const DEVICES: usize = 12;
const STEP_MS: i64 = 5_000;
const OOO_MS: i64 = 1_000;
/// Seconds of event time the data covers.
const SECONDS: i64 = 120;

struct Setup {
    topo: TestTopology,
    raw: String,
    events: String,
    group: String,
    merge_group: String,
    run: String,
    rules: String,
    _dir: tempfile::TempDir,
    /// Event time of the first sample: a step, an hour ago.
    t0: i64,
}

impl Setup {
    fn new() -> Self {
        let raw = unique("test.raw");
        let events = unique("test.alerts");
        let (partials, state, dlq) = (
            unique("test.partials"),
            unique("test.state"),
            unique("test.dlq"),
        );
        let group = unique("alerters");
        let merge_group = format!("{group}-merge");
        let run = unique("r").replace('.', "_");
        let rules = format!(
            r#"groups:
- name: e2e
  interval: 5s
  rules:
  - alert: Hot
    expr: temp > 80
    for: 10s
    labels: {{run: {run}, severity: page}}
    annotations: {{summary: '{{{{ $labels.device }}}} at {{{{ $value }}}}'}}
  - alert: ServiceHot
    expr: avg by (svc) (temp) > 60
    for: 10s
    labels: {{run: {run}}}
    annotations: {{summary: 'service {{{{ $labels.svc }}}} averages {{{{ $value }}}}'}}
  - alert: Silent
    expr: absent_over_time(temp{{device="d05"}}[15s])
    for: 5s
    labels: {{run: {run}}}
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let rules_path = write_file(dir.path(), "e2e.rules.yml", rules.as_bytes());
        let yaml = format!(
            "version: 1\nkafka: {{bootstrap_servers: '{}', consumer: {{session.timeout.ms: '4000', heartbeat.interval.ms: '1000'}}}}\ntopics:\n  {raw}: {{partitions: {PARTITIONS}, compression: lz4}}\n  {dlq}: {{partitions: 1}}\n  {partials}: {{partitions: 4}}\n  {state}: {{partitions: 2, cleanup_policy: compact}}\n  {events}: {{partitions: 2}}\n  {events}.backtest: {{partitions: 1}}\nconsumer_groups:\n  {group}: {{role: alerter, topics: [{raw}], sink: am}}\nsinks:\n  am: {{type: alertmanager, url: '{AM}'}}\ngateway: {{listen: '127.0.0.1:0', topic: {raw}}}\nalerter:\n  group: {group}\n  merge_group: {merge_group}\n  listen: 127.0.0.1:0\n  workers: 2\n  rule_files: ['{}']\n  out_of_orderness: {OOO_MS}ms\n  idle_timeout: 30s\n  partials_topic: {partials}\n  state_topic: {state}\n  events_topic: {events}\n  dead_letter_topic: {dlq}\n  resend_delay: 5s\n",
            bootstrap(),
            rules_path.display()
        );
        let topo = TestTopology::from_yaml(&yaml, raw.clone(), PARTITIONS);
        topo.apply();
        let t0 = (now_ms() - 3_600_000) / STEP_MS * STEP_MS;
        Self {
            topo,
            raw,
            events,
            group,
            merge_group,
            run,
            rules,
            _dir: dir,
            t0,
        }
    }

    fn alerter(&self) -> Service {
        let s = Service::spawn(
            &["alerter", "-f", self.topo.path.to_str().unwrap()],
            "alerter listening",
        );
        s.wait_ready(Duration::from_secs(60));
        s
    }

    /// An alerter that holds every partition of both its groups (see
    /// [`start_owning_all_of`] on tansu and killed members).
    fn alerter_owning_all(&self) -> Service {
        start_owning_all_of(
            || self.alerter(),
            &[(&self.group, PARTITIONS), (&self.merge_group, 4)],
            Duration::from_secs(180),
        )
    }

    /// Samples of second `s`: device, labels, value (`None`: silent).
    fn sample(&self, device: usize, s: i64) -> Option<f64> {
        let hot = device == 1 && (20..60).contains(&s);
        let svc0_hot = device.is_multiple_of(3) && (30..70).contains(&s);
        if device == 5 && (40..80).contains(&s) {
            return None;
        }
        Some(if hot {
            90.0 + (s % 3) as f64
        } else if svc0_hot {
            70.0
        } else {
            50.0 + device as f64 * 0.25
        })
    }

    /// A device's labels; `slot` puts its series on partition `device % PARTITIONS`,
    /// the one its key hashes to (as the contract asks).
    fn labels(device: usize) -> Vec<(String, String)> {
        let (dev, svc) = (format!("d{device:02}"), format!("s{}", device % 3));
        let key = first_key_in_partition(device as u32 % PARTITIONS, PARTITIONS, |n| {
            format!("temp{{device=\"{dev}\",slot=\"{n}\",svc=\"{svc}\"}}")
        });
        let (_, labels) = parse_key(&key).expect("a series key");
        labels.into_iter().map(|l| (l.name, l.value)).collect()
    }

    /// Produces seconds `from..to`, each partition's devices in one record per second
    /// (event time: as fast as the broker takes them).
    fn produce(&self, from: i64, to: i64) {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for s in from..to {
            for part in 0..PARTITIONS as usize {
                let mut e = BatchEncoder::new();
                for d in (part..DEVICES).step_by(PARTITIONS as usize) {
                    if let Some(v) = self.sample(d, s) {
                        e.push(&Series::new(
                            "temp",
                            Self::labels(d)
                                .into_iter()
                                .map(|(k, v)| Label::new(k, v))
                                .collect(),
                            vec![Sample::new(self.t0 + s * 1000, v)],
                        ));
                    }
                }
                let payload = e.finish();
                p.send(
                    BaseRecord::<(), [u8]>::to(&self.raw)
                        .partition(part as i32)
                        .payload(&payload),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            }
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(30)).unwrap();
    }

    /// What the in-process engine announces over the samples of seconds `0..to`, with
    /// each partition's watermark at its last sample minus the out-of-orderness.
    fn expected(&self, to: i64) -> Vec<Announced> {
        let groups = parse_file(Path::new("e2e.rules.yml"), &self.rules).unwrap();
        let mut engine = Engine::new(groups, Labels::default(), self.t0);
        for s in 0..to {
            for d in 0..DEVICES {
                if let Some(v) = self.sample(d, s) {
                    let mut l = Self::labels(d);
                    l.push(("__name__".into(), "temp".into()));
                    engine.push(&Labels::new(l), self.t0 + s * 1000, v);
                }
            }
        }
        alerts::advance(&mut engine, self.t0 + (to - 1) * 1000 - OOO_MS)
    }

    /// The last step evaluated for seconds `0..to`.
    fn last_step(&self, to: i64) -> i64 {
        (self.t0 + (to - 1) * 1000 - OOO_MS) / STEP_MS * STEP_MS
    }

    /// Every event on the events topic, decoded, sorted.
    fn events(&self) -> Vec<Announced> {
        alerts::events(&self.events, 2)
    }

    /// Waits until every destination evaluated and stored `step`.
    fn wait_evaluated(&self, alerter: &Service, step: i64, timeout: Duration) {
        self.wait_evaluated_by(&[alerter], step, timeout)
    }

    /// The same over the members of a group, each holding some destinations.
    fn wait_evaluated_by(&self, members: &[&Service], step: i64, timeout: Duration) {
        wait_until("the alerter evaluating the step", timeout, || {
            (0..4).all(|q| {
                let gauge = format!("weir_alerter_evaluated_step_seconds{{partition=\"{q}\"}} ");
                members
                    .iter()
                    .any(|m| metric(m, &gauge) * 1000.0 >= step as f64)
            })
        });
    }

    /// This run's alerts in Alertmanager with `alertname`, as (state, labels).
    fn am_states(&self, alertname: &str) -> Vec<String> {
        let url = format!(
            "{AM}/api/v2/alerts?filter=run%3D%22{}%22&filter=alertname%3D%22{alertname}%22",
            self.run
        );
        let v: serde_json::Value = client().get(url).send().unwrap().json().unwrap();
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| a["status"]["state"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

#[test]
fn a_breach_fires_in_kafka_and_alertmanager_and_its_end_resolves_both() {
    ensure_stack();
    let s = Setup::new();
    let alerter = s.alerter();
    // Phase one: d01 hot from 20 s (pending), firing from 30 s.
    s.produce(0, 50);
    s.wait_evaluated(&alerter, s.last_step(50), Duration::from_secs(60));
    let fired = s.events();
    assert!(
        fired.iter().any(|e| e.0 == "Hot"
            && e.2 == "firing"
            && e.1.get("device").map(String::as_str) == Some("d01")),
        "a firing event for d01:\n{}",
        show(&fired)
    );
    assert_same(&fired, &s.expected(50));
    wait_until(
        "Hot active in Alertmanager",
        Duration::from_secs(30),
        || s.am_states("Hot") == ["active"],
    );
    // Phase two: the breach ends at 60 s; the service average and the silent device
    // come and go.
    s.produce(50, SECONDS);
    s.wait_evaluated(&alerter, s.last_step(SECONDS), Duration::from_secs(60));
    let all = s.events();
    let expected = s.expected(SECONDS);
    for name in ["Hot", "ServiceHot", "Silent"] {
        for status in ["firing", "resolved"] {
            assert!(
                expected.iter().any(|e| e.0 == name && e.2 == status),
                "the data set makes {name} {status}"
            );
        }
    }
    assert_same(&all, &expected);
    wait_until(
        "Hot resolved in Alertmanager",
        Duration::from_secs(30),
        || !s.am_states("Hot").iter().any(|st| st == "active"),
    );
    assert!(alerter.terminate().success());

    // Backtest: the same rules over the recorded range report exactly the events the
    // live alerter wrote. The records were produced an hour after their event time (as
    // a backfill would be): the margin says so.
    let state = tempfile::tempdir().unwrap();
    let rfc = |ms: i64| {
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
            .to_string()
    };
    let out = weir(&[
        "replay",
        "-f",
        s.topo.path.to_str().unwrap(),
        "--topic",
        &s.raw,
        "--into",
        "alerter",
        "--from",
        &rfc(s.t0),
        "--to",
        &rfc(s.t0 + SECONDS * 1000),
        "--margin",
        "2h",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the backtest failed: {}",
        out.stderr_text()
    );
    let mut backtest: Vec<Announced> = out
        .stdout_text()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line per alert");
            (
                v["alertname"].as_str().unwrap().to_string(),
                serde_json::from_value(v["labels"].clone()).unwrap(),
                v["status"].as_str().unwrap().to_string(),
                v["starts_at_ms"].as_i64().unwrap(),
                v["ends_at_ms"].as_i64(),
            )
        })
        .collect();
    backtest.sort();
    assert_same(&backtest, &all);
    // Asked for a topic, the backtest writes the same as Avro events there.
    let topic = format!("{}.backtest", s.events);
    let out = weir(&[
        "replay",
        "-f",
        s.topo.path.to_str().unwrap(),
        "--topic",
        &s.raw,
        "--into",
        "alerter",
        "--from",
        &rfc(s.t0),
        "--to",
        &rfc(s.t0 + SECONDS * 1000),
        "--margin",
        "2h",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--to-topic",
        &topic,
    ]);
    assert!(
        out.status.success(),
        "the backtest failed: {}",
        out.stderr_text()
    );
    assert_same(&alerts::events(&topic, 1), &all);
}

#[test]
fn an_alerter_killed_while_alerts_are_pending_and_firing_announces_each_once() {
    ensure_stack();
    let s = Setup::new();
    let mut alerter = s.alerter();
    // Each kill lands while the alerter reads the next chunk, with alerts in its state:
    // after +25 s Hot is pending; after +45 s Hot and ServiceHot fire; after +65 s
    // Silent fires.
    let chunks = [(0, 30), (30, 50), (50, 67), (67, SECONDS)];
    s.produce(chunks[0].0, chunks[0].1);
    for w in chunks.windows(2) {
        let (done, (from, to)) = (w[0].1, w[1]);
        s.wait_evaluated(&alerter, s.last_step(done), Duration::from_secs(90));
        s.produce(from, to);
        eprintln!(
            "killing the alerter after step {} while it reads up to +{to}s",
            s.last_step(done) - s.t0
        );
        alerter.kill9();
        alerter = s.alerter_owning_all();
    }
    s.wait_evaluated(&alerter, s.last_step(SECONDS), Duration::from_secs(90));
    assert_same(&s.events(), &s.expected(SECONDS));
}

#[test]
fn two_alerters_one_leaving_mid_run_announce_each_once() {
    ensure_stack();
    let s = Setup::new();
    let first = s.alerter();
    let second = s.alerter();
    s.produce(0, 40);
    s.wait_evaluated_by(&[&first, &second], s.last_step(40), Duration::from_secs(90));
    // Hot is firing, ServiceHot pending: the second member leaves while both read the
    // rest.
    s.produce(40, SECONDS);
    assert!(second.terminate().success());
    s.wait_evaluated(&first, s.last_step(SECONDS), Duration::from_secs(90));
    assert_same(&s.events(), &s.expected(SECONDS));
}
