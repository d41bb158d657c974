//! Harness for the end-to-end tests: the real local stack (started by the project's own
//! `scripts/stack.sh`), the real `weir` binary as a child process, unique topics per
//! test so tests run in parallel, and helpers to read what landed in Kafka.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_contract::{MetricsBatch, Sample};

pub mod alerts;
pub mod pipeline;
pub mod rollup;
pub mod scrape;
pub mod tls;

/// A blocking HTTP client builder. reqwest is built without a TLS provider of its
/// own (weir hands it one); this makes ring the process default first.
pub fn http() -> reqwest::blocking::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn bootstrap() -> String {
    std::env::var("WEIR_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Starts the local stack once per test binary (idempotent: a running stack is reused).
pub fn ensure_stack() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/stack.sh"))
            .arg("start")
            .output()
            .expect("run scripts/stack.sh start");
        assert!(
            out.status.success(),
            "scripts/stack.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// `cargo build -p PACKAGE --bin PACKAGE` (a no-op when it is up to date); its path.
fn build_bin(package: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "-q", "-p", package, "--bin", package])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {package} failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    target.join("debug").join(package)
}

/// The `weir` binary, built once.
pub fn weir_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("weir")).clone()
}

/// The `weir-load` binary (the demo fleet, benchmarks), built once.
pub fn weir_load_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("weir-load")).clone()
}

/// Where scripts/lib.sh caches what it installs (`WEIR_CACHE_DIR`).
pub fn cache_dir() -> PathBuf {
    std::env::var("WEIR_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let base = std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache")
                });
            base.join("weir")
        })
}

/// The Python of the project's venv (confluent-kafka, fastavro), made by stack.sh.
pub fn python() -> PathBuf {
    let p = std::env::var("WEIR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cache_dir().join("venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/stack.sh install",
        p.display()
    );
    p
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}.{}.{}.{}",
        std::process::id(),
        t,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A topology file in a temporary directory, one topic, a gateway on an ephemeral port.
pub struct TestTopology {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub topic: String,
    pub partitions: u32,
}

impl TestTopology {
    /// `gateway_extra` is YAML indented by two spaces, placed under `gateway:`.
    pub fn new(partitions: u32, gateway_extra: &str) -> Self {
        Self::with_kafka(
            &bootstrap(),
            "",
            partitions,
            "  delivery_timeout: 20s\n",
            gateway_extra,
        )
    }

    /// A topology on another broker (e.g. librdkafka's mock cluster). `kafka_extra` goes
    /// under `kafka:`, the two gateway parts under `gateway:`, all indented two spaces.
    pub fn with_kafka(
        bootstrap: &str,
        kafka_extra: &str,
        partitions: u32,
        gateway_base: &str,
        gateway_extra: &str,
    ) -> Self {
        let topic = unique("test.raw");
        let yaml = format!(
            "version: 1\nkafka:\n  bootstrap_servers: '{bootstrap}'\n{kafka_extra}topics:\n  {topic}:\n    partitions: {partitions}\n    compression: lz4\ngateway:\n  listen: 127.0.0.1:0\n  topic: {topic}\n{gateway_base}{gateway_extra}"
        );
        Self::from_yaml(&yaml, topic, partitions)
    }

    pub fn from_yaml(yaml: &str, topic: String, partitions: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topology.yaml");
        std::fs::write(&path, yaml).unwrap();
        Self {
            _dir: dir,
            path,
            topic,
            partitions,
        }
    }

    /// `weir topics apply -f` on this topology.
    pub fn apply(&self) {
        let out = weir(&["topics", "apply", "-f", self.path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "topics apply failed: {}",
            out.stderr_text()
        );
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `weir ARGS...` to completion.
pub fn weir(args: &[&str]) -> Output {
    let out = Command::new(weir_bin())
        .args(args)
        .output()
        .expect("run weir");
    Output {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A running `weir` service (gateway, tsdb-writer, ...), killed when dropped.
pub struct Service {
    child: Option<Child>,
    pub addr: SocketAddr,
    name: String,
}

/// The gateway is a service like any other; the name keeps the tests readable.
pub type Gateway = Service;

impl Service {
    /// Starts `weir --log-format json ARGS...` and waits until it logs `listening_message`
    /// with its bound address.
    pub fn spawn(args: &[&str], listening_message: &str) -> Self {
        let name = args.first().copied().unwrap_or("weir").to_string();
        let mut child = Command::new(weir_bin())
            .args(["--log-format", "json"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("WEIR_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (tag, wanted) = (name.clone(), listening_message.to_string());
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == wanted.as_str() {
                        if let Some(addr) = v["addr"]
                            .as_str()
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                        {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(addr);
                            }
                        }
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("weir {name} did not log {listening_message:?}"));
        Self {
            child: Some(child),
            addr,
            name,
        }
    }

    /// Starts the gateway and waits until it is ready (Kafka reached).
    pub fn start(topology: &TestTopology) -> Self {
        let gw = Self::spawn_gateway(topology);
        gw.wait_ready(Duration::from_secs(60));
        gw
    }

    /// Starts the gateway and waits only until it listens.
    pub fn spawn_gateway(topology: &TestTopology) -> Self {
        Self::spawn(
            &["gateway", "-f", topology.path.to_str().unwrap()],
            "gateway listening",
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let client = http().build().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let s = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(s.success(), "kill -{name}");
    }

    /// SIGKILL: the process gets no chance to drain or commit.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the exit status of a graceful shutdown.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within 60s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A consumer that reads by assignment and commits nothing.
pub fn reader() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test.reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Reads every partition of `topic` from the beginning until `done(records)` holds or
/// `timeout` passes; returns what was read either way.
pub fn read_topic(
    topic: &str,
    partitions: u32,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer = reader();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline && !done(&out) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("kafka read");
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}

/// Every record of `topic` now: reads each partition from the beginning up to the high
/// watermark the broker reports when called.
pub fn read_all(topic: &str, partitions: u32) -> Vec<Record> {
    let consumer = reader();
    let mut ends = BTreeMap::new();
    for p in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("the topic's watermarks");
        ends.insert(p, high);
    }
    let remaining = |out: &[Record]| {
        ends.iter().any(|(p, high)| {
            *high > 0
                && !out
                    .iter()
                    .any(|r| r.partition == *p && r.offset + 1 >= *high)
        })
    };
    let records = read_topic(topic, partitions, Duration::from_secs(120), |out| {
        !remaining(out)
    });
    assert!(
        !remaining(&records),
        "{topic}: not every record read in 120 s"
    );
    records
}

/// Series key → samples, over every decoded record; also checks each series sits on the
/// partition murmur2 of its key gives.
pub fn samples_by_key(records: &[Record], partitions: u32) -> BTreeMap<String, Vec<Sample>> {
    let decoder = weir_contract::avro::Decoder::new();
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for r in records {
        let batch: MetricsBatch = decoder
            .decode(&r.payload)
            .unwrap_or_else(|e| panic!("record {}@{}: {e}", r.partition, r.offset));
        for s in batch.series {
            let key = s.key();
            let want = weir_contract::partition_for_key(key.as_bytes(), partitions);
            assert_eq!(
                r.partition as u32, want,
                "series {key} is on partition {} but murmur2 says {want}",
                r.partition
            );
            out.entry(key).or_default().extend(s.samples);
        }
    }
    out
}

pub fn sample_count(records: &[Record]) -> usize {
    let decoder = weir_contract::avro::Decoder::new();
    records
        .iter()
        .filter_map(|r| decoder.decode(&r.payload).ok())
        .map(|b| b.sample_count())
        .sum()
}

/// The distinct samples of Avro records, as (series key, timestamp, value bits): a side
/// topic written at least once may carry a sample twice after a rebalance.
pub fn distinct_samples(records: &[Record]) -> std::collections::BTreeSet<(String, i64, u64)> {
    let decoder = weir_contract::avro::Decoder::new();
    let mut out = std::collections::BTreeSet::new();
    for b in records
        .iter()
        .filter_map(|r| decoder.decode(&r.payload).ok())
    {
        for s in &b.series {
            let key = s.key();
            for x in &s.samples {
                out.insert((key.clone(), x.timestamp_ms, x.value.to_bits()));
            }
        }
    }
    out
}

/// Snappy-compressed protobuf body of a remote-write request.
pub fn remote_write_body(req: &weir_contract::remote_write::WriteRequest) -> Vec<u8> {
    use prost::Message;
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

pub fn post_remote_write(
    client: &reqwest::blocking::Client,
    url: &str,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .expect("send remote write")
}

/// An HTTP client whose requests give up after 60 s, so a hung server fails the test.
/// Runs a ClickHouse query over HTTP on the local stack; its answer, or a panic naming
/// the query.
pub fn clickhouse(q: &str) -> String {
    let r = client()
        .post("http://127.0.0.1:8123/")
        .body(q.to_string())
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "ClickHouse: {q}: {text}");
    text
}

pub fn client() -> reqwest::blocking::Client {
    http()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// Polls `cond` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts `cond` at every look (as often as `wait_until` looks) until `until`: for what
/// must hold through a fixed span, such as a sink outage of the length an issue asks.
pub fn holds_until(what: &str, until: Instant, mut cond: impl FnMut() -> bool) {
    loop {
        assert!(cond(), "{what} stopped holding");
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// The value of the first line of a service's `/metrics` that starts with `prefix`
/// (name and labels as rendered), or 0.
pub fn metric(service: &Service, prefix: &str) -> f64 {
    metric_at(&service.url("/metrics"), prefix)
}

/// The value of the first line of the Prometheus text at `url` that starts with
/// `prefix`, or 0.
pub fn metric_at(url: &str, prefix: &str) -> f64 {
    client()
        .get(url)
        .send()
        .and_then(|r| r.text())
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(prefix).and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0.0)
}

/// The sum of every line of a service's `/metrics` that starts with `prefix` (a metric
/// name and some of its labels), or 0.
pub fn metric_sum(service: &Service, prefix: &str) -> f64 {
    client()
        .get(service.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        })
        .unwrap_or(0.0)
}

/// Starts a consumer (with `start`) that takes over a group whose other member was
/// killed, and returns it once it holds all `partitions` of `group`.
///
/// tansu 0.6 hands a killed member's partitions out again only to a member that joins
/// after the dead member's session expired; one that joins earlier gets its share and
/// never the rest. So a start that is not given everything within a few seconds is
/// stopped and tried again, until it is or `timeout` passes — waiting on the takeover
/// itself rather than a fixed sleep for the session to run out. On Kafka the first
/// start gets everything once the session expires.
pub fn start_owning_all(
    start: impl Fn() -> Service,
    group: &str,
    partitions: u32,
    timeout: Duration,
) -> Service {
    start_owning_all_of(start, &[(group, partitions)], timeout)
}

/// [`start_owning_all`] for a service that is a member of several groups (each with
/// its partition count): started again until it holds every partition of each.
pub fn start_owning_all_of(
    start: impl Fn() -> Service,
    groups: &[(&str, u32)],
    timeout: Duration,
) -> Service {
    let deadline = Instant::now() + timeout;
    // Each attempt waits twice as long as the one before: on a loaded machine joining
    // two groups takes longer than the first wait, and a restart starts the rebalance
    // over.
    let mut wait = Duration::from_secs(6);
    loop {
        let s = start();
        let attempt = Instant::now() + wait;
        wait = (wait * 2).min(Duration::from_secs(40));
        while Instant::now() < attempt {
            let all = groups.iter().all(|(group, partitions)| {
                let gauge = format!("weir_consumer_assigned_partitions{{group=\"{group}\"");
                metric_sum(&s, &gauge) == *partitions as f64
            });
            if all {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            Instant::now() < deadline,
            "no member of {groups:?} came to hold all their partitions in {timeout:?}"
        );
        let _ = s.terminate();
    }
}

/// A free loopback port (bound then released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A VictoriaMetrics of the test's own (Debian's binary) on a free loopback port, so a
/// test can stop and restart it without touching the shared stack.
pub struct Vm {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    dedup: bool,
    /// Basic auth it demands (`-httpAuth.*`), which `export` then sends.
    auth: Option<(String, String)>,
}

impl Vm {
    pub fn start() -> Self {
        Self::start_with_dedup(true)
    }

    /// `dedup: false` keeps every sample written, duplicates included, so a test can
    /// see a sample written twice (the local stack's VictoriaMetrics removes them).
    pub fn start_with_dedup(dedup: bool) -> Self {
        let mut vm = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            dedup,
            auth: None,
        };
        vm.restart();
        vm
    }

    /// One that demands basic auth on every endpoint.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Self {
        let mut vm = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            dedup: true,
            auth: Some((user.into(), password.into())),
        };
        vm.restart();
        vm
    }

    fn get(
        &self,
        client: &reqwest::blocking::Client,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let req = client.get(self.url(path));
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// Starts it (again) on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.dir.path().display()))
            .args([
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ])
            .args(self.dedup.then_some("-dedup.minScrapeInterval=1ms"))
            .args(self.auth.iter().flat_map(|(u, p)| {
                [
                    format!("-httpAuth.username={u}"),
                    format!("-httpAuth.password={p}"),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics (Debian package)");
        self.child = Some(child);
        let client = http().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .get(&client, "/health")
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Series key → (timestamp, value) pairs for every series matching `selector`,
    /// after a flush so that everything written is visible.
    pub fn export(&self, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        self.export_query(&[("match[]", selector)])
    }

    /// [`Vm::export`] of the samples from `start` to `end` (milliseconds, inclusive).
    pub fn export_range(
        &self,
        selector: &str,
        start: i64,
        end: i64,
    ) -> BTreeMap<String, Vec<(i64, f64)>> {
        let (s, e) = (
            format!("{:.3}", start as f64 / 1000.0),
            format!("{:.3}", end as f64 / 1000.0),
        );
        self.export_query(&[("match[]", selector), ("start", &s), ("end", &e)])
    }

    /// Staleness markers come back as JSON `null`; they are returned as the marker's NaN.
    fn export_query(&self, query: &[(&str, &str)]) -> BTreeMap<String, Vec<(i64, f64)>> {
        let client = http().build().unwrap();
        let _ = self.get(&client, "/internal/force_flush").send();
        let text = self
            .get(&client, "/api/v1/export")
            .query(query)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("export line");
            let key = scrape::key_of(v["metric"].as_object().unwrap());
            let ts = v["timestamps"].as_array().unwrap();
            let vals = v["values"].as_array().unwrap();
            let mut points: Vec<(i64, f64)> = ts
                .iter()
                .zip(vals)
                .map(|(t, x)| {
                    let v = match x {
                        serde_json::Value::Null => {
                            f64::from_bits(weir_contract::model::STALE_NAN_BITS)
                        }
                        x => x.as_f64().unwrap(),
                    };
                    (t.as_i64().unwrap(), v)
                })
                .collect();
            points.sort_by_key(|p| p.0);
            out.insert(key, points);
        }
        out
    }

    /// Polls [`Vm::export`] until `done` holds or `timeout`; returns the last export.
    pub fn wait_for(
        &self,
        selector: &str,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, Vec<(i64, f64)>>) -> bool,
    ) -> BTreeMap<String, Vec<(i64, f64)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.export(selector);
            if done(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}
