//! Kafka over TLS with SASL SCRAM, end to end: a broker that demands SASL, behind a TLS
//! endpoint (stunnel4) with a certificate from a CA this test makes; the gateway
//! produces and the tsdb-writer consumes through it, and the samples land in
//! VictoriaMetrics.
//!
//! tansu 0.6 is built with SCRAM-SHA-256/512 (and OAUTHBEARER) only, verified against
//! credentials stored with AlterUserScramCredentials; PLAIN is not offered. librdkafka's
//! PLAIN works the same way against any broker that offers it, so SCRAM is what is
//! tested here.
use std::time::{Duration, Instant};

use weir_contract::remote_write::{Label, Sample as PSample, TimeSeries, WriteRequest};
use weir_e2e::tls::{SaslBroker, TestCa};
use weir_e2e::*;

const USER: &str = "weir-pipeline";
const PASSWORD: &str = "scram-password-of-the-test";

fn topology(broker: &SaslBroker, ca: &TestCa, password: &str, vm: &Vm, run: &str) -> TestTopology {
    let topic = unique("tls.raw");
    let group = unique("tls.writers");
    let dlq = unique("tls.dlq");
    let yaml = format!(
        "version: 1
kafka:
  bootstrap_servers: '{b}'
  client:
    security.protocol: SASL_SSL
    ssl.ca.location: '{ca}'
    sasl.mechanism: SCRAM-SHA-256
    sasl.username: {USER}
    sasl.password: '{password}'
topics:
  {topic}: {{partitions: 2, compression: lz4}}
  {dlq}: {{partitions: 1}}
consumer_groups:
  {group}: {{role: tsdb-writer, topics: [{topic}], sink: vm}}
sinks:
  vm: {{type: prometheus_remote_write, url: '{vm}'}}
gateway: {{listen: '127.0.0.1:0', topic: {topic}, delivery_timeout: 20s}}
tsdb_writer: {{group: {group}, listen: '127.0.0.1:0', dead_letter_topic: {dlq}, max_batch_delay: 200ms, retry_max: 2s}}
# {run}
",
        b = broker.bootstrap(),
        ca = ca.cert.display(),
        vm = vm.url("/api/v1/write"),
    );
    TestTopology::from_yaml(&yaml, topic, 2)
}

#[test]
fn the_gateway_and_the_tsdb_writer_run_over_sasl_ssl_with_scram() {
    ensure_stack();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "kafka");
    let server = ca.issue("localhost", "broker");
    let broker = SaslBroker::start(&server, &[(USER, PASSWORD)]);
    let vm = Vm::start();
    let run = unique("kafka-tls").replace('.', "_");

    // The password comes from the environment, as a production topology would take it.
    std::env::set_var("WEIR_TEST_KAFKA_PASSWORD", PASSWORD);
    let topo = topology(&broker, &ca, "env:WEIR_TEST_KAFKA_PASSWORD", &vm, &run);
    topo.apply();
    let gw = Gateway::start(&topo);
    let writer = Service::spawn(
        &["tsdb-writer", "-f", topo.path.to_str().unwrap()],
        "tsdb-writer listening",
    );
    writer.wait_ready(Duration::from_secs(60));

    let http = client();
    let t0 = now_ms();
    for round in 0..5i64 {
        let timeseries = (0..20)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "tls_test_value".into(),
                    },
                    Label {
                        name: "device".into(),
                        value: format!("d{i:02}"),
                    },
                    Label {
                        name: "run".into(),
                        value: run.clone(),
                    },
                ],
                samples: vec![PSample {
                    value: (round * 100 + i) as f64,
                    timestamp: t0 + round * 1000,
                }],
                histograms: vec![],
            })
            .collect();
        let body = remote_write_body(&WriteRequest {
            timeseries,
            metadata: vec![],
        });
        let r = post_remote_write(&http, &gw.url("/api/v1/write"), body);
        assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
    }
    let sent = Instant::now();
    let got = vm.wait_for(
        &format!("{{run=\"{run}\"}}"),
        Duration::from_secs(60),
        |m| m.len() == 20 && m.values().all(|p| p.len() == 5),
    );
    assert_eq!(got.len(), 20, "series in VictoriaMetrics: {got:?}");
    eprintln!(
        "all samples in VictoriaMetrics {:?} after the last was acknowledged",
        sent.elapsed()
    );
    for i in 0..20i64 {
        let key = weir_contract::SeriesKey::new(
            "tls_test_value",
            &[
                weir_contract::Label::new("device", format!("d{i:02}")),
                weir_contract::Label::new("run", run.clone()),
            ],
        )
        .0;
        let want: Vec<(i64, f64)> = (0..5)
            .map(|r| (t0 + r * 1000, (r * 100 + i) as f64))
            .collect();
        assert_eq!(got.get(&key), Some(&want), "{key}");
    }
    drop(writer);
    drop(gw);

    // A wrong SCRAM password is refused: the gateway never becomes ready and says why.
    let bad = topology(&broker, &ca, "not-the-password-at-all", &vm, &run);
    let gw = Gateway::spawn_gateway(&bad);
    let reason = never_ready(&gw, "a gateway with a wrong password");
    assert!(
        !reason.contains("not-the-password"),
        "/readyz shows the password: {reason}"
    );
    eprintln!("readyz with a wrong SCRAM password: {reason}");

    // Without TLS the endpoint does not answer Kafka; without SASL the broker refuses.
    for (addr, what) in [
        (broker.bootstrap(), "plaintext to the TLS port"),
        (
            format!("127.0.0.1:{}", broker.plain_port),
            "no SASL on the broker's own port",
        ),
    ] {
        let topo = TestTopology::with_kafka(&addr, "", 1, "", "");
        never_ready(&Gateway::spawn_gateway(&topo), what);
    }
}

/// Waits until the gateway's first look-up of Kafka metadata has failed (its `/readyz`
/// names it), answering 503 all along, then checks it stays 503 through its next
/// attempts; returns the reason `/readyz` gave.
fn never_ready(gw: &Gateway, what: &str) -> String {
    let http = client();
    let readyz = || {
        let r = http.get(gw.url("/readyz")).send().unwrap();
        assert_eq!(r.status().as_u16(), 503, "{what}: the gateway became ready");
        r.text().unwrap_or_default()
    };
    let mut reason = String::new();
    wait_until(
        &format!("{what}: a failed metadata look-up"),
        Duration::from_secs(30),
        || {
            reason = readyz();
            reason.contains("kafka metadata")
        },
    );
    holds_until(
        &format!("{what}: not ready"),
        Instant::now() + Duration::from_secs(3),
        || !readyz().is_empty(),
    );
    reason
}
