//! Faults under load: the whole pipeline (gateway, TSDB writer, rollup, alerter) runs on
//! the local stack while a client remote-writes through the gateway, and one after the
//! other the broker is killed with SIGKILL and started again, then the TSDB
//! (VictoriaMetrics), ClickHouse and Alertmanager are restarted. Afterwards:
//! - every sample the gateway acknowledged is in VictoriaMetrics, sample by sample, and
//!   nothing else is;
//! - the rollup's rows equal the batch computation over what `metrics.raw` holds;
//! - the alert events are exactly the in-process engine's transitions over the same
//!   samples: none lost, none repeated; and the alert still firing is in Alertmanager.
//!
//! The client behaves like Prometheus: one request at a time, retried with backoff until
//! it is acknowledged, so a request refused while the broker is down comes again and the
//! log may hold a sample twice (never out of order).
//!
//! Each server stays down until the service that uses it has seen it fail (a retry
//! counted, a round waiting), not for a fixed time.
//!
//! This binary kills servers every test shares, so it holds a single test (cargo runs
//! test binaries one after another).
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_alerter::engine::Engine;
use weir_alerter::labels::Labels;
use weir_alerter::rules::parse_file;
use weir_contract::avro::{BatchEncoder, Decoder};
use weir_contract::partitioner::first_key_in_partition;
use weir_contract::remote_write::{Label as PLabel, Sample as PSample, TimeSeries, WriteRequest};
use weir_contract::series_key::parse_key;
use weir_contract::{Sample, Series};
use weir_e2e::alerts::{self, assert_same, Announced};
use weir_e2e::*;
use weir_rollup::testkit::{compare, reference, Actual, RowKey};

const PARTITIONS: u32 = 4;
const DEVICES: usize = 40;
/// Event time advances one second per round; a round is one request of every device.
const ROUND_MS: i64 = 1_000;
/// Rounds per second of wall time the client aims at (fewer while a fault lasts).
const ROUNDS_PER_SECOND: u64 = 10;
const STEP_MS: i64 = 5_000;
const OOO_MS: i64 = 2_000;
const LATENESS_MS: i64 = 5_000;
const TIER_MS: i64 = 60_000;
const AM: &str = "http://127.0.0.1:9093";

/// The raw topic: per partition, its records in log order (as the batch computation
/// takes them).
type Log = Vec<(u32, Vec<weir_rollup::testkit::Record>)>;

struct Setup {
    topo: TestTopology,
    raw: String,
    events: String,
    database: String,
    run: String,
    rules: String,
    /// Event time of round 0: a step, 25 minutes ago.
    t0: i64,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(vm: &Vm) -> Self {
        let t = unique;
        let (raw, dlq, late, t1m) = (
            t("test.raw"),
            t("test.dlq"),
            t("test.late"),
            t("test.rollup.1m"),
        );
        let (partials, state, events) = (t("test.partials"), t("test.state"), t("test.alerts"));
        let (writers, rollups, alerters) = (t("writers"), t("rollups"), t("alerters"));
        let run = t("r").replace('.', "_");
        let database = format!("weir_test_{run}");
        let rules = format!(
            r#"groups:
- name: faults
  interval: 5s
  rules:
  - alert: FaultHot
    expr: fault_temp > 80
    for: 10s
    labels: {{run: {run}}}
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let rules_path = write_file(dir.path(), "faults.rules.yml", rules.as_bytes());
        let yaml = format!(
            "version: 1
kafka: {{bootstrap_servers: '{k}', consumer: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}}}
topics:
  {raw}: {{partitions: {PARTITIONS}, compression: lz4}}
  {dlq}: {{partitions: 1}}
  {late}: {{partitions: 1}}
  {t1m}: {{partitions: 2}}
  {partials}: {{partitions: 4}}
  {state}: {{partitions: 2, cleanup_policy: compact}}
  {events}: {{partitions: 2}}
consumer_groups:
  {writers}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}
  {rollups}: {{role: rollup, topics: [{raw}], sink: ch}}
  {alerters}: {{role: alerter, topics: [{raw}], sink: am}}
sinks:
  vm: {{type: prometheus_remote_write, url: '{vm}'}}
  ch: {{type: clickhouse, url: 'http://127.0.0.1:8123', database: {database}}}
  am: {{type: alertmanager, url: '{AM}'}}
gateway: {{listen: '127.0.0.1:0', topic: {raw}}}
tsdb_writer: {{group: {writers}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms, retry_max: 2s}}
rollup:
  group: {rollups}
  listen: 127.0.0.1:0
  workers: 2
  out_of_orderness: {OOO_MS}ms
  allowed_lateness: {LATENESS_MS}ms
  idle_timeout: 10s
  retry_max: 2s
  dead_letter_topic: {dlq}
  late_topic: {late}
  tiers:
    - {{name: '1m', size: {TIER_MS}ms, retention: 30d, topic: {t1m}}}
alerter:
  group: {alerters}
  merge_group: {alerters}-merge
  listen: 127.0.0.1:0
  workers: 2
  rule_files: ['{rules_path}']
  out_of_orderness: {OOO_MS}ms
  idle_timeout: 30s
  partials_topic: {partials}
  state_topic: {state}
  events_topic: {events}
  dead_letter_topic: {dlq}
  resend_delay: 5s
",
            k = bootstrap(),
            vm = vm.url("/api/v1/write"),
            rules_path = rules_path.display(),
        );
        let topo = TestTopology::from_yaml(&yaml, raw.clone(), PARTITIONS);
        topo.apply();
        let t0 = (now_ms() - 25 * 60_000) / STEP_MS * STEP_MS;
        Self {
            topo,
            raw,
            events,
            database,
            run,
            rules,
            t0,
            _dir: dir,
        }
    }

    fn service(&self, role: &str) -> Service {
        let s = Service::spawn(
            &[role, "-f", self.topo.path.to_str().unwrap()],
            &format!("{role} listening"),
        );
        s.wait_ready(Duration::from_secs(60));
        s
    }

    /// Device `d`'s value in round `r`: d00 hot from round 250 to the end (firing when
    /// the run ends), d01 hot in rounds 50..150 (fires and resolves), the rest cool.
    fn value(d: usize, r: u64) -> f64 {
        let hot = (d == 0 && r >= 250) || (d == 1 && (50..150).contains(&r));
        if hot {
            90.0 + (r % 4) as f64
        } else {
            (20 + d) as f64 + (r % 8) as f64 * 0.25
        }
    }

    fn request(&self, r: u64) -> (Vec<u8>, Vec<(String, i64, f64)>) {
        let ts = self.t0 + r as i64 * ROUND_MS;
        let mut series = Vec::new();
        let mut sent = Vec::new();
        for d in 0..DEVICES {
            let device = format!("d{d:02}");
            let v = Self::value(d, r);
            let labels = [
                ("__name__", "fault_temp"),
                ("device", device.as_str()),
                ("run", self.run.as_str()),
            ];
            sent.push((
                format!("fault_temp{{device=\"{device}\",run=\"{}\"}}", self.run),
                ts,
                v,
            ));
            series.push(TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| PLabel {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![PSample {
                    value: v,
                    timestamp: ts,
                }],
                histograms: vec![],
            });
        }
        let body = remote_write_body(&WriteRequest {
            timeseries: series,
            metadata: vec![],
        });
        (body, sent)
    }

    /// Every record of the raw topic, per partition in log order, as `(key, ts, value)`.
    fn raw_log(&self) -> Log {
        let records = read_all(&self.raw, PARTITIONS);
        let decoder = Decoder::new();
        let mut parts: Log = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
        let mut by_part: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
        for r in &records {
            by_part.entry(r.partition).or_default().push(r);
        }
        for (p, mut recs) in by_part {
            recs.sort_by_key(|r| r.offset);
            for r in recs {
                let batch = decoder
                    .decode(&r.payload)
                    .expect("a record of the contract");
                let rec = batch
                    .series
                    .iter()
                    .flat_map(|s| {
                        let key = s.key();
                        s.samples
                            .iter()
                            .map(move |x| (key.clone(), x.timestamp_ms, x.value))
                    })
                    .collect();
                parts[p as usize].1.push(rec);
            }
        }
        parts
    }

    /// The rollup's 1-minute rows for this run's series.
    fn rows(&self) -> BTreeMap<RowKey, Actual> {
        weir_e2e::rollup::rows(&self.database, "1m", 0, "fault_temp")
    }

    /// What the in-process engine announces over the distinct samples of the log, up to
    /// the watermark of the partitions' last samples.
    fn expected_events(&self, log: &Log) -> (Vec<Announced>, i64) {
        let groups = parse_file(Path::new("faults.rules.yml"), &self.rules).unwrap();
        let mut engine = Engine::new(groups, Labels::default(), self.t0);
        let distinct: BTreeSet<(i64, String, u64)> = log
            .iter()
            .flat_map(|(_, recs)| recs.iter().flatten())
            .map(|(k, t, v)| (*t, k.clone(), v.to_bits()))
            .collect();
        for (t, k, v) in &distinct {
            let (name, labels) = parse_key(k).unwrap();
            let mut l: Vec<(String, String)> =
                labels.into_iter().map(|l| (l.name, l.value)).collect();
            l.push(("__name__".into(), name));
            engine.push(&Labels::new(l), *t, f64::from_bits(*v));
        }
        let watermark = log
            .iter()
            .map(|(_, recs)| recs.iter().flatten().map(|x| x.1).max().unwrap_or(i64::MIN))
            .min()
            .unwrap_or(i64::MIN)
            - OOO_MS;
        (
            alerts::advance(&mut engine, watermark),
            watermark / STEP_MS * STEP_MS,
        )
    }

    fn am_active(&self) -> Vec<String> {
        let url = format!(
            "{AM}/api/v2/alerts?filter=run%3D%22{}%22&active=true",
            self.run
        );
        let Ok(r) = client().get(url).send() else {
            return Vec::new();
        };
        let v: serde_json::Value = r.json().unwrap_or_default();
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["status"]["state"] == "active")
            .map(|a| a["labels"]["device"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = client()
            .post("http://127.0.0.1:8123")
            .body(format!("DROP DATABASE IF EXISTS {}", self.database))
            .send();
    }
}

/// `scripts/stack.sh ARGS`, which must succeed.
fn stack(args: &[&str]) {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/stack.sh"))
        .args(args)
        .output()
        .expect("run scripts/stack.sh");
    assert!(
        out.status.success(),
        "scripts/stack.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the client saw: samples acknowledged, and answers other than 2xx by status.
#[derive(Default)]
struct Client {
    acknowledged: Vec<(String, i64, f64)>,
    refused: BTreeMap<String, u64>,
    /// The longest a round took from its first attempt to its acknowledgement.
    slowest: Duration,
    /// When the round not yet acknowledged was first sent.
    waiting_since: Option<Instant>,
}

/// Sends rounds until `stop`, each retried with backoff until acknowledged.
fn load(s: &Setup, url: &str, stop: &AtomicBool, rounds: &AtomicU64, out: &Mutex<Client>) {
    let http = http().timeout(Duration::from_secs(30)).build().unwrap();
    let start = Instant::now();
    let mut r = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (body, sent) = s.request(r);
        let first_attempt = Instant::now();
        out.lock().unwrap().waiting_since = Some(first_attempt);
        let mut backoff = Duration::from_millis(100);
        loop {
            let answer = http
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send();
            let status = match answer {
                Ok(a) if a.status().is_success() => break,
                Ok(a) => a.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "timeout".into(),
                Err(_) => "connection".into(),
            };
            assert!(
                status.starts_with('5') || status == "429" || !status.starts_with(char::is_numeric),
                "request refused with {status}: only conditions a retry can cure may be answered so"
            );
            *out.lock().unwrap().refused.entry(status).or_default() += 1;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        let mut o = out.lock().unwrap();
        o.acknowledged.extend(sent);
        o.slowest = o.slowest.max(first_attempt.elapsed());
        o.waiting_since = None;
        drop(o);
        r += 1;
        rounds.store(r, Ordering::Relaxed);
        // Paced: event time must stay behind the consumers' clock.
        let due = start + Duration::from_millis(r * 1000 / ROUNDS_PER_SECOND);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// One sample per partition, three minutes after the data: every window closes and the
/// alerter's watermark passes the last step of the data.
fn produce_sentinels(s: &Setup, last_ts: i64) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for part in 0..PARTITIONS {
        let key = first_key_in_partition(part, PARTITIONS, |n| {
            format!("fault_watermark{{run=\"{}\",slot=\"{n}\"}}", s.run)
        });
        let (name, labels) = parse_key(&key).unwrap();
        let mut e = BatchEncoder::new();
        e.push(&Series::new(
            name,
            labels,
            vec![Sample::new(last_ts + 180_000, 0.0)],
        ));
        p.send(
            BaseRecord::<(), [u8]>::to(&s.raw)
                .partition(part as i32)
                .payload(&e.finish()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn wait_rounds(rounds: &AtomicU64, more: u64, what: &str) {
    let target = rounds.load(Ordering::Relaxed) + more;
    wait_until(what, Duration::from_secs(120), || {
        rounds.load(Ordering::Relaxed) >= target
    });
}

#[test]
fn broker_tsdb_clickhouse_and_alertmanager_restarts_under_load_lose_and_repeat_nothing() {
    ensure_stack();
    let mut vm = Vm::start();
    let s = Setup::new(&vm);
    let gateway = s.service("gateway");
    let writer = s.service("tsdb-writer");
    let rollup = s.service("rollup");
    let alerter = s.service("alerter");

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let client_state = Arc::new(Mutex::new(Client::default()));
    let url = gateway.url("/api/v1/write");
    let s = Arc::new(s);
    let load_thread = {
        let (s, stop, rounds, out) = (
            s.clone(),
            stop.clone(),
            rounds.clone(),
            client_state.clone(),
        );
        std::thread::spawn(move || load(&s, &url, &stop, &rounds, &out))
    };

    // Faults, each while the load runs, each followed by rounds acknowledged again.
    wait_rounds(&rounds, 100, "the first rounds acknowledged");
    eprintln!(
        "faults: SIGKILL tansu at round {}",
        rounds.load(Ordering::Relaxed)
    );
    stack(&["kill", "tansu"]);
    // Down until the client has waited on a round for 2 s: the outage met the load.
    wait_until(
        "a round waiting for the broker",
        Duration::from_secs(60),
        || {
            client_state
                .lock()
                .unwrap()
                .waiting_since
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(2))
        },
    );
    stack(&["start"]);
    wait_rounds(
        &rounds,
        100,
        "rounds acknowledged after the broker came back",
    );

    eprintln!(
        "faults: VictoriaMetrics restart at round {}",
        rounds.load(Ordering::Relaxed)
    );
    let retries = r#"weir_tsdb_writer_requests_total{outcome="retry"} "#;
    let before = metric(&writer, retries);
    vm.stop();
    // Down until the writer has had to retry a write.
    wait_until("the TSDB writer retrying", Duration::from_secs(60), || {
        metric(&writer, retries) > before
    });
    vm.restart();
    wait_rounds(&rounds, 50, "rounds after the TSDB restart");

    eprintln!(
        "faults: ClickHouse killed at round {}",
        rounds.load(Ordering::Relaxed)
    );
    let errors = "weir_rollup_sink_errors_total ";
    let before = metric(&rollup, errors);
    stack(&["kill", "clickhouse"]);
    // Down until the rollup has failed a write of its rows.
    wait_until(
        "the rollup failing to write",
        Duration::from_secs(60),
        || metric(&rollup, errors) > before,
    );
    stack(&["start"]);
    wait_rounds(&rounds, 50, "rounds after the ClickHouse restart");

    eprintln!(
        "faults: Alertmanager killed at round {}",
        rounds.load(Ordering::Relaxed)
    );
    let failed = r#"weir_alerter_notifications_total{outcome="failed"} "#;
    let before = metric(&alerter, failed);
    stack(&["kill", "alertmanager"]);
    // Down until the alerter has failed to notify (it re-sends the firing d00 every 5 s).
    wait_until(
        "the alerter failing to notify",
        Duration::from_secs(60),
        || metric(&alerter, failed) > before,
    );
    stack(&["start"]);
    wait_rounds(&rounds, 100, "rounds after the Alertmanager restart");

    stop.store(true, Ordering::Relaxed);
    load_thread.join().expect("the load thread");
    let client_state = std::mem::take(&mut *client_state.lock().unwrap());
    let acknowledged = client_state.acknowledged;
    eprintln!(
        "faults: {} rounds, {} samples acknowledged; slowest round {:?}; refused answers: {:?}",
        rounds.load(Ordering::Relaxed),
        acknowledged.len(),
        client_state.slowest,
        client_state.refused
    );
    // The broker was down for 3 s while rounds were sent 10 a second: one of them waited
    // for it (else the fault missed the load and the test proves nothing).
    assert!(
        client_state.slowest >= Duration::from_secs(2),
        "no round waited for the broker"
    );
    let last_ts = acknowledged.iter().map(|x| x.1).max().unwrap();
    produce_sentinels(&s, last_ts);

    // 1. VictoriaMetrics holds every acknowledged sample, and nothing else.
    let mut want: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (k, t, v) in &acknowledged {
        want.entry(k.clone()).or_default().push((*t, *v));
    }
    let selector = format!("{{__name__=\"fault_temp\",run=\"{}\"}}", s.run);
    let got = vm.wait_for(&selector, Duration::from_secs(120), |got| *got == want);
    if got != want {
        let missing: usize = want
            .iter()
            .map(|(k, w)| {
                let g: BTreeSet<i64> = got
                    .get(k)
                    .map(|g| g.iter().map(|x| x.0).collect())
                    .unwrap_or_default();
                w.iter().filter(|x| !g.contains(&x.0)).count()
            })
            .sum();
        panic!(
            "VictoriaMetrics differs from what the gateway acknowledged: {missing} acknowledged samples missing ({} series wanted, {} got)",
            want.len(),
            got.len()
        );
    }

    // 2. The rollup's rows equal the batch computation over the log.
    let log = s.raw_log();
    let (mut expected, _) = reference(&log, &[TIER_MS], OOO_MS, LATENESS_MS);
    expected.retain(|k, _| !k.1.contains("fault_watermark"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = s.rows();
        match compare(&rows, &expected) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!(
                "rollup rows differ from the batch computation ({} rows, {} expected):\n{e}",
                rows.len(),
                expected.len()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }

    // 3. Alert events: the engine's transitions, each once.
    let (expected_events, last_step) = s.expected_events(&log);
    for status in ["firing", "resolved"] {
        assert!(
            expected_events.iter().any(|e| e.2 == status),
            "the data makes an alert {status}"
        );
    }
    wait_until(
        "the alerter evaluating the last step",
        Duration::from_secs(120),
        || {
            (0..PARTITIONS).all(|q| {
                let gauge = format!("weir_alerter_evaluated_step_seconds{{partition=\"{q}\"}} ");
                metric(&alerter, &gauge) * 1000.0 >= last_step as f64
            })
        },
    );
    assert_same(&alerts::events(&s.events, 2), &expected_events);
    // The alert firing at the end is in the restarted Alertmanager again.
    wait_until(
        "d00 active in Alertmanager after its restart",
        Duration::from_secs(60),
        || s.am_active() == ["d00"],
    );

    for svc in [gateway, writer, rollup, alerter] {
        assert!(
            svc.terminate().success(),
            "graceful shutdown after the faults"
        );
    }
}
