//! The gateway over HTTPS with real TLS clients: curl (HTTP/2 and HTTP/1.1) with the
//! test's CA, Prometheus remote-writing through TLS, client certificates that name a
//! tenant (and one from a foreign CA refused), and a certificate renewed while a client
//! holds a connection open.
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_e2e::tls::{Issued, TestCa};
use weir_e2e::*;

const KEY: &str = "acme-key-for-the-tls-test-0001";

struct TlsGateway {
    gw: Gateway,
    topo: TestTopology,
    ops: u16,
}

impl TlsGateway {
    /// A gateway with TLS from `server`, ops endpoints on a port of their own, and
    /// `extra` (YAML under `gateway:`, two spaces).
    fn start(server: &Issued, extra: &str) -> Self {
        let ops = free_port();
        let topo = TestTopology::new(
            2,
            &format!(
                "  ops_listen: 127.0.0.1:{ops}
  tls:
    cert_file: '{}'
    key_file: '{}'
    reload_interval: 500ms
{extra}",
                server.cert.display(),
                server.key.display()
            ),
        );
        topo.apply();
        let gw = Gateway::spawn_gateway(&topo);
        let me = Self { gw, topo, ops };
        wait_until(
            "gateway ready on its ops port",
            Duration::from_secs(60),
            || {
                client()
                    .get(me.ops_url("/readyz"))
                    .send()
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            },
        );
        me
    }

    fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ops)
    }

    fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.gw.addr.port())
    }

    fn ops_metric(&self, prefix: &str) -> f64 {
        metric_at(&self.ops_url("/metrics"), prefix)
    }
}

fn auth_with_key() -> String {
    format!(
        "  auth:\n    enabled: true\n    keys:\n      - tenant: acme\n        sha256: sha256:{}\n",
        weir_gateway_hash(KEY)
    )
}

/// `weir keys hash`, as an operator would run it.
fn weir_gateway_hash(key: &str) -> String {
    let out = weir(&["keys", "hash", key]);
    assert!(out.status.success(), "{}", out.stderr_text());
    out.stdout_text()
        .trim()
        .strip_prefix("sha256:")
        .expect("sha256: prefix")
        .to_string()
}

/// curl's exit code and `%{http_code} %{http_version}` output.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The tenant label values of every series in the topic whose name is `name`.
fn tenants_of(topic: &str, partitions: u32, name: &str) -> Vec<String> {
    let mut out: Vec<String> = samples_by_key(&read_all(topic, partitions), partitions)
        .keys()
        .filter(|k| k.starts_with(&format!("{name}{{")))
        .filter_map(|k| {
            let at = k.find("tenant=\"")? + 8;
            let end = k[at..].find('"')?;
            Some(k[at..at + end].to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn curl_and_prometheus_write_over_https_and_ops_stay_on_their_own_port() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "gw");
    let server = ca.issue("localhost", "gateway");
    let g = TlsGateway::start(&server, &auth_with_key());
    let ca_path = ca.cert.to_str().unwrap();
    let line = format!("curl_tls,host=a value=1 {}", now_ms());
    let auth = format!("Authorization: Bearer {KEY}");

    // HTTP/2 by ALPN (curl's default over TLS), then HTTP/1.1.
    let url = g.https("/write?precision=ms");
    let (code, out) = curl(&[
        "--cacert",
        ca_path,
        "-H",
        &auth,
        "--data-binary",
        &line,
        &url,
    ]);
    assert_eq!((code, out.as_str()), (0, "204 2"), "curl over HTTP/2");
    let (code, out) = curl(&[
        "--http1.1",
        "--cacert",
        ca_path,
        "-H",
        &auth,
        "--data-binary",
        &line,
        &url,
    ]);
    assert_eq!((code, out.as_str()), (0, "204 1.1"), "curl over HTTP/1.1");
    // Without the CA the certificate is not trusted (curl: 60); plain HTTP is not served.
    let (code, _) = curl(&["-H", &auth, "--data-binary", &line, &url]);
    assert_eq!(
        code, 60,
        "curl without the test CA must refuse the certificate"
    );
    let (code, out) = curl(&["-H", &auth, "--data-binary", &line, &g.gw.url("/write")]);
    assert!(
        code != 0 || !out.starts_with("204"),
        "plain HTTP was accepted: {out}"
    );
    // The ops routes are on ops_listen only.
    let (code, out) = curl(&["--cacert", ca_path, &g.https("/metrics")]);
    assert_eq!(
        (code, out.as_str()),
        (0, "404 2"),
        "/metrics on the TLS port"
    );
    assert!(g.ops_metric("weir_gateway_requests_total{protocol=\"influx\",code=\"204\"}") >= 2.0);

    // Prometheus 2.42 remote-writes its own metrics through TLS with the API key.
    let job = unique("prom_tls").replace('.', "_");
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: {job}
    static_configs: [{{targets: ['127.0.0.1:PROM_PORT']}}]
remote_write:
  - url: '{}'
    authorization: {{credentials: '{KEY}'}}
    tls_config: {{ca_file: '{ca_path}'}}
    queue_config: {{batch_send_deadline: 1s}}
",
            g.https("/api/v1/write")
        ),
    );
    let mut tenants = Vec::new();
    wait_until(
        "Prometheus' `up` in the topic",
        Duration::from_secs(90),
        || {
            tenants = tenants_of(&g.topo.topic, g.topo.partitions, "up");
            !tenants.is_empty()
        },
    );
    drop(prom);
    assert_eq!(
        tenants,
        vec!["acme".to_string()],
        "Prometheus' `up` through TLS, with the key's tenant"
    );
    assert_eq!(
        tenants_of(&g.topo.topic, g.topo.partitions, "curl_tls"),
        vec!["acme".to_string()]
    );
}

#[test]
fn client_certificates_name_the_tenant_and_a_foreign_ca_is_refused() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "gw");
    let server = ca.issue("localhost", "gateway");
    let clients = TestCa::new(dir.path(), "clients");
    let foreign = TestCa::new(dir.path(), "foreign");
    let edge = clients.issue("edge-device-1", "edge");
    let stranger = clients.issue("unlisted-device", "stranger");
    let impostor = foreign.issue("edge-device-1", "impostor");
    let g = TlsGateway::start(
        &server,
        &format!(
            "    client_auth:
      ca_file: '{}'
      mode: required
      tenants: {{edge-device-1: edge}}
{}",
            clients.cert.display(),
            auth_with_key()
        ),
    );
    let url = g.https("/write?precision=ms");
    let ca_path = ca.cert.to_str().unwrap();
    let line = format!("mtls_test,host=a value=1 {}", now_ms());
    let with = |c: &Issued| {
        curl(&[
            "--cacert",
            ca_path,
            "--cert",
            c.cert.to_str().unwrap(),
            "--key",
            c.key.to_str().unwrap(),
            "--data-binary",
            &line,
            &url,
        ])
    };
    assert_eq!(
        with(&edge),
        (0, "204 2".to_string()),
        "a client certificate of the clients' CA"
    );
    let (code, out) = with(&stranger);
    assert_eq!(
        (code, &out[..3]),
        (0, "403"),
        "a verified certificate mapped to no tenant: {out}"
    );
    // A refused body is read before the answer: curl still uploading 512 KiB over HTTP/2
    // gets the 403, not a reset stream (it reported "Stream error in the HTTP/2 framing
    // layer" when the gateway answered without reading).
    let big = dir.path().join("big.txt");
    let lines: String = (0..12_000)
        .map(|i| format!("mtls_test,host=h{i} value=1 {}\n", now_ms()))
        .collect();
    std::fs::write(&big, lines).unwrap();
    let big_arg = format!("@{}", big.display());
    for _ in 0..3 {
        let (code, out) = curl(&[
            "--cacert",
            ca_path,
            "--cert",
            stranger.cert.to_str().unwrap(),
            "--key",
            stranger.key.to_str().unwrap(),
            "--data-binary",
            &big_arg,
            &url,
        ]);
        assert_eq!(
            (code, &out[..3]),
            (0, "403"),
            "a refused 512 KiB body: {out}"
        );
    }
    let (code, out) = with(&impostor);
    assert!(
        code != 0,
        "a certificate from a foreign CA was accepted: {out}"
    );
    let (code, out) = curl(&["--cacert", ca_path, "--data-binary", &line, &url]);
    assert!(
        code != 0,
        "no client certificate was accepted with mode: required: {out}"
    );
    assert!(g.ops_metric("weir_gateway_tls_handshake_failures_total") >= 2.0);
    assert_eq!(
        tenants_of(&g.topo.topic, g.topo.partitions, "mtls_test"),
        vec!["edge".to_string()]
    );
}

#[test]
fn a_renewed_certificate_is_served_to_new_connections_and_open_ones_go_on() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old");
    let new_ca = TestCa::new(dir.path(), "new");
    let live = old_ca.issue("localhost", "live");
    let g = TlsGateway::start(&live, "");
    let trusting = |ca: &TestCa| {
        let pem = std::fs::read(&ca.cert).unwrap();
        http()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .pool_idle_timeout(Duration::from_secs(600))
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    let send = |c: &reqwest::blocking::Client| {
        c.post(g.https("/write?precision=ms"))
            .body(format!("renew_test,host=a value=1 {}", now_ms()))
            .send()
            .map(|r| r.status().as_u16())
    };
    let old_client = trusting(&old_ca);
    assert_eq!(send(&old_client).unwrap(), 204);

    // Renew: the new certificate and key replace the files, each by a rename.
    let renewed = new_ca.issue("localhost", "renewed");
    replace(&renewed.key, &live.key);
    replace(&renewed.cert, &live.cert);
    wait_until("the certificate reloaded", Duration::from_secs(20), || {
        g.ops_metric("weir_tls_reloads_total{outcome=\"ok\"}") >= 1.0
    });
    // The open connection still works: had it been dropped, this client (trusting only
    // the old CA) could not have connected again.
    assert_eq!(
        send(&old_client).unwrap(),
        204,
        "the open connection after the reload"
    );
    assert!(
        send(&trusting(&old_ca)).is_err(),
        "a new connection still got the old certificate"
    );
    assert_eq!(
        send(&trusting(&new_ca)).unwrap(),
        204,
        "a new connection with the renewed one"
    );
}

fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Debian's Prometheus on a free port, `PROM_PORT` in the config replaced by its port.
struct Prometheus {
    child: Child,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Self {
        let port = free_port();
        let cfg = write_file(
            dir,
            "prometheus.yml",
            config.replace("PROM_PORT", &port.to_string()).as_bytes(),
        );
        let data = dir.join("prometheus-data");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package)");
        Self { child }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
