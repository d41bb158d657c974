//! Every sink against a real server behind TLS, with a CA the test makes: the
//! remote-write sink to VictoriaMetrics behind stunnel4 demanding a client certificate
//! and basic auth; the ClickHouse sink to the stack's ClickHouse behind stunnel4 with a
//! user and password; the Alertmanager sink to an Alertmanager serving TLS and basic auth
//! itself (`--web.config.file`). Each also checks the failures an operator meets: an
//! unknown CA, no client certificate, a wrong password.
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_contract::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use weir_e2e::tls::{wait_port, Stunnel, TestCa};
use weir_e2e::*;
use weir_runtime::config::{BasicAuth, SinkSpec, TlsClientOptions};
use weir_tsdb_writer::sink::{RemoteWriteSink, SendError};

fn rt() -> tokio::runtime::Runtime {
    weir_runtime::tls::install_default_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn write_request(run: &str, ts: i64) -> bytes::Bytes {
    let body = remote_write_body(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "sink_tls_test".into(),
                },
                Label {
                    name: "run".into(),
                    value: run.into(),
                },
            ],
            samples: vec![Sample {
                value: 7.0,
                timestamp: ts,
            }],
            histograms: vec![],
        }],
        metadata: vec![],
    });
    bytes::Bytes::from(body)
}

#[test]
fn remote_write_sink_over_tls_with_a_client_certificate_and_basic_auth() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "sinks");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.issue("localhost", "vm-server");
    let client_cert = ca.issue("weir-writer", "writer-client");
    let vm = Vm::start_with_basic_auth("weir", "vm-secret");
    let tunnel = Stunnel::start_verifying(
        dir.path(),
        "vm",
        &server,
        &format!("127.0.0.1:{}", vm.port),
        &ca.cert,
    );
    let url = format!("https://localhost:{}/api/v1/write", tunnel.port);
    std::env::set_var("WEIR_TEST_VM_PASSWORD", "vm-secret");
    let spec = |ca_file: Option<&std::path::Path>, with_cert: bool, password: &str| {
        SinkSpec::PrometheusRemoteWrite {
            url: url.clone(),
            headers: BTreeMap::new(),
            basic_auth: Some(BasicAuth {
                username: "weir".into(),
                password: password.into(),
            }),
            bearer_token: None,
            tls: TlsClientOptions {
                ca_file: ca_file.map(|p| p.to_path_buf()),
                cert_file: with_cert.then(|| client_cert.cert.clone()),
                key_file: with_cert.then(|| client_cert.key.clone()),
                insecure_skip_verify: false,
            },
        }
    };
    let rt = rt();
    let send = |s: SinkSpec, body: bytes::Bytes| {
        let sink = RemoteWriteSink::new(&s, Duration::from_secs(5)).unwrap();
        rt.block_on(sink.send(body))
    };
    let run = unique("run").replace('.', "_");
    let ts = now_ms() - 5_000;

    // Each fault is an error an operator can read, and retryable: nothing is lost.
    let fails = |r: Result<(), SendError>, what: &str| match r {
        Err(SendError::Retryable(why)) => why,
        other => panic!("{what}: expected a retryable error, got {other:?}"),
    };
    let why = fails(
        send(
            spec(Some(&other.cert), true, "env:WEIR_TEST_VM_PASSWORD"),
            write_request(&run, ts),
        ),
        "a server certificate of an unknown CA",
    );
    assert!(why.contains("localhost"), "{why}");
    fails(
        send(
            spec(Some(&ca.cert), false, "env:WEIR_TEST_VM_PASSWORD"),
            write_request(&run, ts),
        ),
        "no client certificate",
    );
    let why = fails(
        send(spec(Some(&ca.cert), true, "wrong"), write_request(&run, ts)),
        "a wrong password",
    );
    assert!(why.contains("401"), "{why}");
    assert!(
        !why.contains("vm-secret") && !why.contains("wrong"),
        "no secret in {why}"
    );

    send(
        spec(Some(&ca.cert), true, "env:WEIR_TEST_VM_PASSWORD"),
        write_request(&run, ts),
    )
    .expect("the write through TLS with a client certificate and basic auth");
    let got = vm.wait_for(
        &format!("{{run=\"{run}\"}}"),
        Duration::from_secs(30),
        |g| !g.is_empty(),
    );
    assert_eq!(
        got.values().next().map(Vec::as_slice),
        Some(&[(ts, 7.0)][..])
    );
}

/// The ClickHouse user `scripts/stack.sh` gives a password (loopback only).
const CH_USER: &str = "weir_auth_test";
const CH_PASSWORD: &str = "weir-auth-test-password";

#[test]
fn clickhouse_sink_over_tls_with_a_user_and_password() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ch");
    let server = ca.issue("localhost", "ch-server");
    let tunnel = Stunnel::start(dir.path(), "ch", &server, "127.0.0.1:8123");
    let database = unique("sink_tls").replace('.', "_");
    let tiers = weir_runtime::Topology::local().rollup.tiers;
    let target = |password: &str| weir_rollup::sink::clickhouse::ClickHouseTarget {
        url: format!("https://localhost:{}", tunnel.port),
        database: database.clone(),
        user: Some(CH_USER.into()),
        password: Some(password.into()),
        tls: TlsClientOptions {
            ca_file: Some(ca.cert.clone()),
            ..Default::default()
        },
    };
    let rt = rt();
    let sink = |password: &str| {
        weir_rollup::sink::clickhouse::ClickHouseSink::new(&target(password), tiers.clone())
            .unwrap()
    };
    let e = rt
        .block_on(sink("not-the-password").ensure_schema())
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains(CH_USER) || e.contains("password"), "{e}");

    let ok = sink(CH_PASSWORD);
    rt.block_on(ok.ensure_schema())
        .expect("the schema created over TLS as the user");
    let start = (now_ms() / 60_000 - 5) * 60_000;
    let row = weir_contract::avro::RollupRecord {
        series: "sink_tls_test{host=\"a\"}",
        tier: "1m",
        window_start: start,
        window_end: start + 60_000,
        count: 3,
        sum: 6.0,
        min: 1.0,
        max: 3.0,
        first: 1.0,
        first_ts: start,
        last: 3.0,
        last_ts: start + 50_000,
        increase: 2.0,
        p50: 2.0,
        p90: 3.0,
        p95: 3.0,
        p99: 3.0,
    };
    rt.block_on(ok.write(0, &[row]))
        .expect("a row written over TLS as the user");
    let table = tiers[0].table();
    let got = clickhouse(&format!(
        "SELECT series, count, sum FROM {database}.{table} FORMAT TSV"
    ));
    assert_eq!(got.trim(), "sink_tls_test{host=\"a\"}\t3\t6", "{got}");
    clickhouse(&format!("DROP DATABASE {database}"));
}

/// An Alertmanager of the test's own serving HTTPS with basic auth.
struct SecuredAlertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SecuredAlertmanager {
    fn start(ca: &TestCa, user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ca.issue("localhost", "am-server");
        let hash = bcrypt::hash(password, 4).unwrap();
        let web = dir.path().join("web.yml");
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {user}: '{hash}'\n",
                server.cert.display(),
                server.key.display()
            ),
        )
        .unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.config.file={}", web.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-alertmanager (Debian package)");
        wait_port(port, Duration::from_secs(30), "alertmanager");
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for SecuredAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn alertmanager_sink_over_tls_with_basic_auth() {
    use weir_alerter::alerting::{Alert, State};
    use weir_alerter::alertmanager::AlertmanagerClient;
    use weir_alerter::labels::Labels;
    use weir_alerter::notify::Notifier;

    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "am");
    let am = SecuredAlertmanager::start(&ca, "weir", "am-secret");
    let url = format!("https://localhost:{}", am.port);
    let spec = |password: &str| SinkSpec::Alertmanager {
        url: url.clone(),
        basic_auth: Some(BasicAuth {
            username: "weir".into(),
            password: password.into(),
        }),
        bearer_token: None,
        tls: TlsClientOptions {
            ca_file: Some(ca.cert.clone()),
            ..Default::default()
        },
    };
    let test = unique("am-tls");
    let mut n = Notifier::new(Duration::from_secs(60), Duration::from_secs(5));
    let fired = now_ms() - 30_000;
    n.firing(
        &Alert {
            labels: Labels::from_strs(&[("alertname", "TlsCheck"), ("test", &test)]),
            annotations: Labels::from_strs(&[("summary", "through TLS")]),
            state: State::Firing,
            value: 1.0,
            active_at: fired - 60_000,
            fired_at: Some(fired),
            resolved_at: None,
            keep_firing_since: None,
        },
        "",
    );
    let alerts: Vec<_> = n.due(now_ms()).iter().map(|d| d.1.clone()).collect();
    assert_eq!(alerts.len(), 1);
    let rt = rt();
    let send = |password: &str| {
        let c = AlertmanagerClient::of_sink(&spec(password), Duration::from_secs(5)).unwrap();
        rt.block_on(c.send(&alerts))
    };
    let e = send("wrong").unwrap_err().to_string();
    assert!(e.contains("401"), "{e}");
    assert!(
        !e.contains("wrong") && !e.contains("am-secret"),
        "no secret in {e}"
    );
    send("am-secret").expect("alerts posted over TLS with basic auth");

    // Read back over TLS with the same CA and credentials.
    let pem = std::fs::read(&ca.cert).unwrap();
    let client = http()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let active = || {
        let v: serde_json::Value = client
            .get(format!("{url}/api/v2/alerts?filter=test%3D%22{test}%22"))
            .basic_auth("weir", Some("am-secret"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v.as_array().map_or(0, Vec::len)
    };
    wait_until(
        "the alert active in the TLS Alertmanager",
        Duration::from_secs(30),
        || active() == 1,
    );
}
