//! Every role as a container: the image `scripts/image.sh` builds, started by
//! `docker/compose.yaml` (host network) against the local stack, with a topology of the
//! test's own (topics, groups, ClickHouse database, ports, a VictoriaMetrics).
//!
//! The demo fleet pushes through the containerised gateway; the test's Prometheus
//! scrapes the four containers and remote-writes what it scraped through the gateway,
//! as the local stack's Prometheus does. While the fleet runs, the rollup and the
//! tsdb-writer containers are stopped (SIGTERM: drain, commit, exit 0 within the grace
//! period) and started again. Then:
//! - every sample the gateway wrote to Kafka is in VictoriaMetrics, once (its
//!   deduplication off, so a sample written twice across the restart would show);
//! - the rollup's 1-minute rows in ClickHouse equal the batch computation over the
//!   records in Kafka: nothing lost, nothing counted twice across the restart;
//! - DeviceOverheating reached Alertmanager;
//! - every panel of every Grafana dashboard under docker/grafana/dashboards returns
//!   data from VictoriaMetrics;
//! - the containers ran as uid 10001 on a read-only root filesystem, `weir healthcheck`
//!   (the image's HEALTHCHECK) reported them healthy, and `compose stop` ended each with
//!   exit code 0.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir_e2e::rollup::rows;
use weir_e2e::*;
use weir_rollup::testkit::{compare, reference};

const ROLES: [&str; 4] = ["gateway", "tsdb-writer", "rollup", "alerter"];
const FLEET_METRICS: [&str; 4] = [
    "temperature_celsius",
    "cpu_usage_ratio",
    "packets_sent_total",
    "uptime_seconds",
];

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .env(
            "CONTAINERS_CONF",
            repo_root().join("docker/containers.conf"),
        )
        .args(args)
        .output()
        .expect("run podman")
}

/// docker/compose.yaml as project `project`, with the test's topology.
struct Compose {
    project: String,
    topology: PathBuf,
    _dir: tempfile::TempDir,
    up: bool,
}

impl Compose {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(python().with_file_name("podman-compose"))
            .current_dir(repo_root())
            .env(
                "CONTAINERS_CONF",
                repo_root().join("docker/containers.conf"),
            )
            .env("WEIR_TOPOLOGY_FILE", &self.topology)
            .env("WEIR_RULES_DIR", repo_root().join("rules"))
            .args(["-p", &self.project, "-f", "docker/compose.yaml"])
            .args(args)
            .output()
            .expect("run podman-compose")
    }

    /// The container of `service`, found by the labels compose gives it.
    fn container(&self, service: &str) -> String {
        let out = podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Names}}",
        ]);
        let names = String::from_utf8_lossy(&out.stdout);
        let name = names.lines().next().unwrap_or_default().trim().to_string();
        assert!(
            !name.is_empty(),
            "no container of {service}: {}",
            text(&out)
        );
        name
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let out = podman(&["inspect", "--format", format, &self.container(service)]);
        assert!(out.status.success(), "podman inspect: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman healthcheck run`: the image's HEALTHCHECK (`weir healthcheck`), which
    /// podman without systemd does not schedule by itself.
    fn healthy(&self, service: &str) -> bool {
        podman(&["healthcheck", "run", &self.container(service)])
            .status
            .success()
    }

    fn wait_healthy(&self, service: &str, timeout: Duration) {
        wait_until(&format!("{service} container healthy"), timeout, || {
            self.healthy(service)
        });
    }

    /// SIGTERM (podman stop, the compose grace period) and the time it took; asserts a
    /// clean exit.
    fn stop_cleanly(&self, service: &str) -> Duration {
        let started = Instant::now();
        let out = podman(&["stop", "-t", "30", &self.container(service)]);
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "podman stop {service}: {}",
            text(&out)
        );
        assert_eq!(
            self.inspect(service, "{{.State.ExitCode}}"),
            "0",
            "{service} did not exit cleanly on SIGTERM:\n{}",
            self.logs(service)
        );
        assert!(
            took < Duration::from_secs(30),
            "{service} took {took:?} to stop, past its grace period"
        );
        self.assert_drained(service);
        took
    }

    /// The log lines of a graceful stop: the signal seen, then the role's own last word
    /// once it drained and committed.
    fn assert_drained(&self, service: &str) {
        let last_word = match service {
            "gateway" => "gateway stopped; producer flushed",
            "tsdb-writer" => "tsdb-writer stopped; offsets committed",
            _ => "worker drained and committed",
        };
        let out = podman(&["logs", &self.container(service)]);
        let logs = text(&out);
        let signal = logs.rfind("shutdown signal received; draining");
        let done = logs.rfind(last_word);
        assert!(
            matches!((signal, done), (Some(a), Some(b)) if a < b),
            "{service}: no {last_word:?} after the shutdown signal in its log:\n{}",
            self.logs(service)
        );
    }

    fn logs(&self, service: &str) -> String {
        let out = podman(&["logs", "--tail", "40", &self.container(service)]);
        text(&out)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        if std::thread::panicking() {
            for s in ROLES {
                eprintln!("--- logs of {s}\n{}", self.logs(s));
            }
        }
        let out = self.cmd(&["down", "-t", "30"]);
        if !out.status.success() {
            eprintln!("compose down: {}", text(&out));
        }
    }
}

/// A Prometheus of the test's own (Debian's binary): scrapes the containers as the local
/// stack's does (job weir, a role label) and remote-writes through the gateway.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(ports: &BTreeMap<&str, u16>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut targets = String::new();
        for (role, port) in ports {
            targets.push_str(&format!(
                "      - targets: ['127.0.0.1:{port}']\n        labels: {{role: {role}}}\n"
            ));
        }
        let config = format!(
            "global: {{scrape_interval: 2s}}\nscrape_configs:\n  - job_name: weir\n    static_configs:\n{targets}remote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s}}\n",
            ports["gateway"]
        );
        let path = write_file(dir.path(), "prometheus.yml", config.as_bytes());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package)");
        Self { child, _dir: dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_image() {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/image.sh"))
        .output()
        .expect("run scripts/image.sh");
    assert!(
        out.status.success(),
        "scripts/image.sh failed:\n{}",
        text(&out)
    );
}

/// The test's deployment: its own topics, groups and ClickHouse database; the services
/// on free loopback ports (host networking); an external label naming this run.
fn topology(dir: &Path, run: &str, vm: &Vm, ports: &BTreeMap<&str, u16>) -> (PathBuf, Names) {
    let n = Names {
        raw: unique("test.raw"),
        database: format!("weir_test_{}", run.replace('.', "_")),
        run: run.replace('.', "_"),
    };
    let t = |s: &str| unique(&format!("test.{s}"));
    let (dlq, late, partials, state, events) =
        (t("dlq"), t("late"), t("partials"), t("state"), t("events"));
    let tiers: Vec<String> = ["1m", "5m", "1h"]
        .iter()
        .map(|x| t(&format!("rollup.{x}")))
        .collect();
    let (writers, rollups, alerters) = (unique("writers"), unique("rollups"), unique("alerters"));
    let yaml = format!(
        r#"version: 1
kafka:
  bootstrap_servers: '{bootstrap}'
  consumer: {{session.timeout.ms: '6000', heartbeat.interval.ms: '1000'}}
topics:
  {raw}: {{partitions: 4, compression: lz4}}
  {dlq}: {{partitions: 1}}
  {late}: {{partitions: 1}}
  {t1m}: {{partitions: 2}}
  {t5m}: {{partitions: 2}}
  {t1h}: {{partitions: 2}}
  {partials}: {{partitions: 2}}
  {state}: {{partitions: 2, cleanup_policy: compact}}
  {events}: {{partitions: 1}}
consumer_groups:
  {writers}: {{role: tsdb-writer, topics: [{raw}], sink: vm}}
  {rollups}: {{role: rollup, topics: [{raw}], sink: ch}}
  {alerters}: {{role: alerter, topics: [{raw}], sink: am}}
sinks:
  vm: {{type: prometheus_remote_write, url: '{vm}'}}
  ch: {{type: clickhouse, url: 'http://127.0.0.1:8123', database: {database}}}
  am: {{type: alertmanager, url: 'http://127.0.0.1:9093'}}
gateway:
  listen: 127.0.0.1:{gw}
  topic: {raw}
tsdb_writer:
  group: {writers}
  listen: 127.0.0.1:{tw}
  dead_letter_topic: {dlq}
  max_batch_delay: 200ms
rollup:
  group: {rollups}
  listen: 127.0.0.1:{ru}
  workers: 2
  out_of_orderness: 10s
  allowed_lateness: 1m
  idle_timeout: 5s
  dead_letter_topic: {dlq}
  late_topic: {late}
  tiers:
    - {{name: 1m, size: 1m, retention: 30d, topic: {t1m}}}
    - {{name: 5m, size: 5m, retention: 30d, topic: {t5m}}}
    - {{name: 1h, size: 1h, retention: 30d, topic: {t1h}}}
alerter:
  group: {alerters}
  merge_group: {alerters}-merge
  listen: 127.0.0.1:{al}
  workers: 2
  # The container's working directory is /etc/weir, the repository's rules/ is mounted
  # at /etc/weir/rules.
  rule_files: [rules/fleet.rules.yml]
  out_of_orderness: 10s
  idle_timeout: 5s
  external_labels: {{e2e_run: '{run}'}}
  partials_topic: {partials}
  state_topic: {state}
  events_topic: {events}
  dead_letter_topic: {dlq}
"#,
        bootstrap = bootstrap(),
        raw = n.raw,
        database = n.database,
        run = n.run,
        vm = vm.url("/api/v1/write"),
        t1m = tiers[0],
        t5m = tiers[1],
        t1h = tiers[2],
        gw = ports["gateway"],
        tw = ports["tsdb-writer"],
        ru = ports["rollup"],
        al = ports["alerter"],
    );
    let path = write_file(dir, "topology.yaml", yaml.as_bytes());
    // The containers run as uid 10001: the bind-mounted file must be readable to it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (path, n)
}

struct Names {
    raw: String,
    database: String,
    run: String,
}

/// Records per partition, in log order, as the rollup reference takes them.
type Partitions = Vec<(u32, Vec<weir_rollup::testkit::Record>)>;

/// The fleet's records in Kafka as the rollup reference takes them (per partition, in
/// log order), and how many distinct timestamps the gateway wrote per series.
fn fleet_in_kafka(raw: &str) -> (Partitions, BTreeMap<String, usize>) {
    let decoder = weir_contract::avro::Decoder::new();
    let mut parts: BTreeMap<u32, Vec<weir_rollup::testkit::Record>> = BTreeMap::new();
    let mut per_series: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
    for r in read_all(raw, 4) {
        let batch = decoder.decode(&r.payload).expect("a metrics.raw record");
        let mut rec = Vec::new();
        for s in batch.series {
            if !FLEET_METRICS.contains(&s.name.as_str()) {
                continue;
            }
            let key = s.key();
            for sample in &s.samples {
                rec.push((key.clone(), sample.timestamp_ms, sample.value));
                per_series
                    .entry(key.clone())
                    .or_default()
                    .insert(sample.timestamp_ms);
            }
        }
        parts.entry(r.partition as u32).or_default().push(rec);
    }
    (
        parts.into_iter().collect(),
        per_series.into_iter().map(|(k, v)| (k, v.len())).collect(),
    )
}

/// Every panel query of every dashboard, with Grafana's variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = repo_root().join("docker/grafana/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "dashboards in {}: {files:?}",
        dir.display()
    );
    for f in files {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&f).unwrap()).expect("dashboard JSON");
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for p in v["panels"].as_array().expect("panels") {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("a PromQL target").to_string();
                let expr = expr
                    .replace("$__rate_interval", "30s")
                    .replace("$__interval", "10s");
                out.push((format!("{name}: {}", p["title"]), expr));
            }
        }
    }
    out
}

#[test]
fn every_role_in_a_container_end_to_end() {
    ensure_stack();
    build_image();
    let run = unique("c");
    // Without deduplication: a sample the writer wrote twice would show.
    let vm = Vm::start_with_dedup(false);
    let ports: BTreeMap<&str, u16> = ROLES.iter().map(|r| (*r, free_port())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (topology_path, names) = topology(dir.path(), &run, &vm, &ports);
    let mut compose = Compose {
        project: format!("weir_e2e_{}", names.run),
        topology: topology_path,
        _dir: dir,
        up: false,
    };

    // Up: topics first (it exits), then the gateway, then the consumers.
    let out = compose.cmd(&["up", "-d"]);
    compose.up = true;
    assert!(out.status.success(), "compose up: {}", text(&out));
    assert_eq!(compose.inspect("topics", "{{.State.ExitCode}}"), "0");
    for role in ROLES {
        compose.wait_healthy(role, Duration::from_secs(90));
        assert_eq!(compose.inspect(role, "{{.Config.User}}"), "10001:10001");
        assert_eq!(
            compose.inspect(role, "{{.HostConfig.ReadonlyRootfs}}"),
            "true"
        );
    }
    let _prometheus = Prometheus::start(&ports);

    // The demo fleet through the containerised gateway, as scripts/demo.sh pushes it.
    let started = Instant::now();
    let mut fleet = Command::new(weir_load_bin())
        .args([
            "fleet",
            "--gateway",
            &format!("http://127.0.0.1:{}", ports["gateway"]),
            "--devices",
            "60",
            "--duration",
            "100s",
            "--overheat",
            "dev-00003",
            "--silent",
            "dev-00007",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run weir-load fleet");

    // A malformed push is refused with a message naming the problem (and shows on the
    // gateway dashboard's refused-requests panel).
    let r = client()
        .post(format!("http://127.0.0.1:{}/api/v1/push", ports["gateway"]))
        .header("Content-Type", "application/json")
        .body("{\"labels\": ")
        .send()
        .expect("the gateway answers");
    assert_eq!(r.status().as_u16(), 400);

    // Mid-run: each consumer stopped (drains, commits) and started again.
    let am = client();
    let mut overheating_seen = false;
    let mut alert_check = || {
        if !overheating_seen {
            let body = am
                .get("http://127.0.0.1:9093/api/v2/alerts")
                .query(&[("filter", format!("e2e_run=\"{}\"", names.run))])
                .send()
                .and_then(|r| r.text())
                .unwrap_or_default();
            overheating_seen = body.contains("\"alertname\":\"DeviceOverheating\"")
                && body.contains("\"device\":\"dev-00003\"");
        }
        overheating_seen
    };
    for (at, role) in [(25, "rollup"), (45, "tsdb-writer")] {
        wait_until("the fleet's progress", Duration::from_secs(120), || {
            alert_check();
            started.elapsed() >= Duration::from_secs(at)
        });
        let took = compose.stop_cleanly(role);
        eprintln!("{role} stopped cleanly in {took:?} at +{at}s");
        let down_until = Instant::now() + Duration::from_secs(8);
        wait_until("the stop's length", Duration::from_secs(20), || {
            alert_check();
            Instant::now() >= down_until
        });
        let out = podman(&["start", &compose.container(role)]);
        assert!(out.status.success(), "podman start {role}: {}", text(&out));
        compose.wait_healthy(role, Duration::from_secs(60));
    }
    wait_until("the fleet to finish", Duration::from_secs(120), || {
        alert_check();
        fleet.try_wait().unwrap().is_some()
    });
    let status = fleet.wait().unwrap();
    assert!(status.success(), "weir-load fleet failed");
    let fleet_end_ms = now_ms();

    // Alertmanager got DeviceOverheating from the containerised alerter.
    wait_until(
        "DeviceOverheating for dev-00003 in Alertmanager",
        Duration::from_secs(60),
        &mut alert_check,
    );

    // VictoriaMetrics holds every sample the gateway wrote.
    let (parts, per_series) = fleet_in_kafka(&names.raw);
    let expected_samples: usize = per_series.values().sum();
    assert!(
        per_series.len() == 60 * 4 && expected_samples > 60 * 4 * 80,
        "{} fleet series, {expected_samples} samples in Kafka",
        per_series.len()
    );
    let selector = format!("{{__name__=~\"{}\"}}", FLEET_METRICS.join("|"));
    let got = vm.wait_for(&selector, Duration::from_secs(60), |got| {
        got.values().map(Vec::len).sum::<usize>() >= expected_samples
    });
    let got_counts: BTreeMap<String, usize> =
        got.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    assert!(
        got_counts == per_series,
        "VictoriaMetrics differs from Kafka: {} series / {} samples against {} / {expected_samples}",
        got_counts.len(),
        got_counts.values().sum::<usize>(),
        per_series.len()
    );

    // ClickHouse: the 1-minute rows of every window that closed before the fleet ended
    // (its end + 10 s out-of-orderness passed), equal to the batch computation.
    let (all_expected, late) = reference(&parts, &[60_000], 10_000, 60_000);
    assert_eq!(late, 0, "no fleet sample is late");
    let closed = |ws: i64| ws + 60_000 + 10_000 <= fleet_end_ms - 5_000;
    let expected: BTreeMap<_, _> = all_expected
        .into_iter()
        .filter(|((_, _, ws), _)| closed(*ws))
        .collect();
    assert!(!expected.is_empty(), "no closed minute to compare");
    // Polled until equal or the deadline; then the last difference is the failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Ok(());
    wait_until(
        "the rollup's closed minutes",
        Duration::from_secs(90),
        || {
            let mut got: BTreeMap<_, _> = FLEET_METRICS
                .iter()
                .flat_map(|m| rows(&names.database, "1m", 0, &format!("{m}{{")))
                .filter(|((_, _, ws), _)| closed(*ws))
                .collect();
            // The fleet's values are decimals (0.145): a sum taken in another order differs in
            // its last bits. Counts, extremes, first and last stay exact; sums and increases
            // within 1e-12 relative are the same sum.
            for (k, r) in got.iter_mut() {
                if let Some(e) = expected.get(k) {
                    let close =
                        |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0);
                    if close(r.sum, e.sum) {
                        r.sum = e.sum;
                    }
                    if close(r.increase, e.increase) {
                        r.increase = e.increase;
                    }
                }
            }
            last = compare(&got, &expected);
            last.is_ok() || Instant::now() > deadline
        },
    );
    if let Err(e) = last {
        panic!("the rollup's closed minutes in ClickHouse differ from the batch computation: {e}");
    }
    eprintln!(
        "{} rows of {} closed minutes equal the batch computation",
        expected.len(),
        expected
            .keys()
            .map(|k| k.2)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );

    // Every dashboard panel returns data (Prometheus scraped the containers for ~2 min).
    let _ = client().get(vm.url("/internal/force_flush")).send();
    let mut empty = Vec::new();
    for (panel, expr) in dashboard_queries() {
        let body: serde_json::Value = client()
            .get(vm.url("/api/v1/query"))
            .query(&[("query", expr.as_str())])
            .send()
            .and_then(|r| r.json())
            .unwrap_or_default();
        let n = body["data"]["result"].as_array().map(Vec::len).unwrap_or(0);
        if n == 0 {
            empty.push(format!("{panel}: {expr} -> {body}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // compose stop: SIGTERM to each, each drains and exits 0.
    let out = compose.cmd(&["stop", "-t", "30"]);
    assert!(out.status.success(), "compose stop: {}", text(&out));
    for role in ROLES {
        assert_eq!(
            compose.inspect(role, "{{.State.ExitCode}}"),
            "0",
            "{role} did not exit cleanly:\n{}",
            compose.logs(role)
        );
        compose.assert_drained(role);
    }
}
