//! The gateway end to end against the real tansu broker: what is sent is what lands,
//! on the partition murmur2 of the series key gives, readable by an independent decoder.
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_contract::remote_write::{Label, Sample as PSample, TimeSeries, WriteRequest};
use weir_contract::Sample;
use weir_e2e::*;

fn lbl(n: &str, v: &str) -> Label {
    Label {
        name: n.into(),
        value: v.into(),
    }
}

#[test]
fn each_protocol_lands_exactly_on_its_murmur2_partition() {
    ensure_stack();
    let topo = TestTopology::new(4, "");
    topo.apply();
    let gw = Gateway::start(&topo);
    let http = client();
    let now = now_ms();
    let mut want: BTreeMap<String, Vec<Sample>> = BTreeMap::new();

    // Remote write: 40 series, 3 samples each, awkward label values included.
    let mut ts = Vec::new();
    for i in 0..40 {
        let host = format!("host-{i:02}");
        let note = if i % 7 == 0 {
            "quote \" back\\slash\nnewline"
        } else {
            "plain"
        };
        let samples: Vec<PSample> = (0..3)
            .map(|j| PSample {
                value: i as f64 * 1.5 + j as f64,
                timestamp: now - 1000 * j,
            })
            .collect();
        ts.push(TimeSeries {
            labels: vec![
                lbl("__name__", "node_cpu_seconds_total"),
                lbl("zone", "eu-1"),
                lbl("host", &host),
                lbl("note", note),
            ],
            samples: samples.clone(),
            histograms: vec![],
        });
        let key = weir_contract::SeriesKey::new(
            "node_cpu_seconds_total",
            &[
                weir_contract::Label::new("host", host.clone()),
                weir_contract::Label::new("note", note),
                weir_contract::Label::new("zone", "eu-1"),
            ],
        );
        want.insert(
            key.0,
            samples
                .iter()
                .map(|s| Sample::new(s.timestamp, s.value))
                .collect(),
        );
    }
    let r = post_remote_write(
        &http,
        &gw.url("/api/v1/write"),
        remote_write_body(&WriteRequest {
            timeseries: ts,
            metadata: vec![],
        }),
    );
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());

    // Influx line protocol, gzip, precision ms; two fields per line.
    let mut lines = String::new();
    for i in 0..20 {
        let t = now - i * 10;
        lines.push_str(&format!(
            "sensor,room=r{},floor=2 temp={}.25,hum={}i {t}\n",
            i % 5,
            i,
            40 + i
        ));
        let labels = format!("{{floor=\"2\",room=\"r{}\"}}", i % 5);
        want.entry(format!("sensor_temp{labels}"))
            .or_default()
            .push(Sample::new(t, i as f64 + 0.25));
        want.entry(format!("sensor_hum{labels}"))
            .or_default()
            .push(Sample::new(t, (40 + i) as f64));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).unwrap();
    let r = http
        .post(gw.url("/api/v2/write?precision=ms&bucket=b&org=o"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());

    // JSON push from two devices.
    let body = serde_json::json!([
        {"labels": {"device": "edge-1", "site": "ams"}, "metrics": [
            {"name": "temperature_celsius", "value": 41.5, "timestamp": now},
            {"name": "uptime_seconds", "value": 1234, "timestamp": now, "type": "counter"}]},
        {"labels": {"device": "edge-2", "site": "fra"}, "metrics": [
            {"name": "temperature_celsius", "value": -3.0, "timestamp": now - 5}]}
    ]);
    let r = http
        .post(gw.url("/api/v1/push"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["samples"], 3);
    want.insert(
        r#"temperature_celsius{device="edge-1",site="ams"}"#.into(),
        vec![Sample::new(now, 41.5)],
    );
    want.insert(
        r#"uptime_seconds{device="edge-1",site="ams"}"#.into(),
        vec![Sample::new(now, 1234.0)],
    );
    want.insert(
        r#"temperature_celsius{device="edge-2",site="fra"}"#.into(),
        vec![Sample::new(now - 5, -3.0)],
    );

    let total: usize = want.values().map(Vec::len).sum();
    let records = read_topic(&topo.topic, topo.partitions, Duration::from_secs(30), |r| {
        sample_count(r) >= total
    });
    // Every request wrote one record per partition it touched, never one per series.
    assert!(
        records.len() <= 3 * topo.partitions as usize,
        "{} records",
        records.len()
    );
    let got = samples_by_key(&records, topo.partitions);
    assert_eq!(got, want, "Kafka holds exactly what was sent");

    // An independent decoder (fastavro, with only the schema file) reads the same.
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            write_file(dir.path(), &format!("r{i}.avro"), &r.payload)
                .display()
                .to_string()
        })
        .collect();
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/decode_fastavro.py"))
        .arg(repo_root().join("schemas/avro/metrics_batch.v1.avsc"))
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fastavro: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut by_fastavro: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for s in decoded {
        let labels: Vec<weir_contract::Label> = s["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| weir_contract::Label::new(l[0].as_str().unwrap(), l[1].as_str().unwrap()))
            .collect();
        let key = weir_contract::SeriesKey::new(s["name"].as_str().unwrap(), &labels).0;
        for x in s["samples"].as_array().unwrap() {
            by_fastavro
                .entry(key.clone())
                .or_default()
                .push(Sample::new(x[0].as_i64().unwrap(), x[1].as_f64().unwrap()));
        }
    }
    assert_eq!(by_fastavro, want, "fastavro decodes the same samples");

    // Graceful shutdown drains and exits cleanly.
    assert!(gw.terminate().success());
}

#[test]
fn a_real_prometheus_remote_writes_through_the_gateway() {
    ensure_stack();
    let topo = TestTopology::new(2, "");
    topo.apply();
    let gw = Gateway::start(&topo);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\nremote_write:\n  - url: {}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms}}\n",
        gw.url("/api/v1/write")
    );
    let cfg_path = write_file(dir.path(), "prometheus.yml", cfg.as_bytes());
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start Debian's prometheus");
    let want_key = format!(r#"up{{instance="127.0.0.1:{port}",job="self"}}"#);
    let started = Instant::now();
    let records = read_topic(&topo.topic, topo.partitions, Duration::from_secs(90), |r| {
        samples_by_key(r, topo.partitions)
            .get(&want_key)
            .is_some_and(|s| s.len() >= 2)
    });
    let _ = prom.kill();
    let _ = prom.wait();
    let got = samples_by_key(&records, topo.partitions);
    let up = got.get(&want_key).unwrap_or_else(|| {
        panic!(
            "no {want_key} after {:?}; got {} series",
            started.elapsed(),
            got.len()
        )
    });
    assert!(up.iter().all(|s| s.value == 1.0), "{up:?}");
    assert!(
        got.keys().any(|k| k.starts_with("prometheus_build_info{")),
        "Prometheus' own metrics arrive too"
    );
}

/// The gateway with small limits, NaN rejected, and auth on.
fn strict_gateway() -> (TestTopology, Gateway) {
    let topo = TestTopology::new(
        2,
        "  limits:\n    max_body_bytes: 256KiB\n    max_decompressed_bytes: 1MiB\n    max_series_per_request: 100\n    max_inflight_bytes: 64MiB\n  validation:\n    non_finite: reject\n    max_sample_age: 1h\n    max_sample_future: 5m\n  auth:\n    enabled: true\n    keys:\n      - {key: test-key-acme-0123456789, tenant: acme}\n",
    );
    topo.apply();
    let gw = Gateway::start(&topo);
    (topo, gw)
}

const KEY: &str = "Bearer test-key-acme-0123456789";

fn one_series(name: &str, labels: &[(&str, &str)], value: f64, ts: i64) -> Vec<u8> {
    let mut l = vec![lbl("__name__", name)];
    l.extend(labels.iter().map(|(a, b)| lbl(a, b)));
    remote_write_body(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: l,
            samples: vec![PSample {
                value,
                timestamp: ts,
            }],
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

#[test]
fn bad_requests_are_refused_with_a_reason_and_the_gateway_keeps_serving() {
    ensure_stack();
    let (topo, gw) = strict_gateway();
    let http = client();
    let now = now_ms();
    let rw = |body: Vec<u8>, ctype: &str, enc: &str| {
        http.post(gw.url("/api/v1/write"))
            .header("Authorization", KEY)
            .header("Content-Type", ctype)
            .header("Content-Encoding", enc)
            .body(body)
            .send()
            .unwrap()
    };
    let pb = "application/x-protobuf";
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b'a'; 64 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    let too_many: Vec<TimeSeries> = (0..101)
        .map(|i| TimeSeries {
            labels: vec![lbl("__name__", "m"), lbl("i", &i.to_string())],
            samples: vec![PSample {
                value: 1.0,
                timestamp: now,
            }],
            histograms: vec![],
        })
        .collect();

    let cases: Vec<(&str, reqwest::blocking::Response, u16, &str)> = vec![
        (
            "malformed protobuf",
            rw(
                snap::raw::Encoder::new()
                    .compress_vec(b"\x0a\xff\xff\xff\xff\x0f garbage")
                    .unwrap(),
                pb,
                "snappy",
            ),
            400,
            "protobuf",
        ),
        (
            "bad snappy",
            rw(b"\x10\xff\xff\xff\xff\xff".to_vec(), pb, "snappy"),
            400,
            "snappy",
        ),
        (
            "oversized body",
            rw(vec![0u8; 300 << 10], pb, "snappy"),
            413,
            "exceeds the limit",
        ),
        (
            "snappy claiming a huge size",
            rw(
                snap::raw::Encoder::new()
                    .compress_vec(&vec![0u8; 2 << 20])
                    .unwrap(),
                pb,
                "snappy",
            ),
            413,
            "decompresses to",
        ),
        (
            "gzip bomb",
            http.post(gw.url("/write"))
                .header("Authorization", KEY)
                .header("Content-Encoding", "gzip")
                .body(bomb)
                .send()
                .unwrap(),
            413,
            "decompresses to more than",
        ),
        (
            "invalid metric name",
            rw(one_series("cpu-usage", &[], 1.0, now), pb, "snappy"),
            400,
            "invalid metric name \"cpu-usage\"",
        ),
        (
            "invalid label name",
            rw(
                one_series("m", &[("bad-label", "x")], 1.0, now),
                pb,
                "snappy",
            ),
            400,
            "invalid label name \"bad-label\"",
        ),
        (
            "duplicate labels",
            rw(
                one_series("m", &[("host", "a"), ("host", "b")], 1.0, now),
                pb,
                "snappy",
            ),
            400,
            "duplicate label name \"host\"",
        ),
        (
            "NaN",
            rw(one_series("m", &[], f64::NAN, now), pb, "snappy"),
            400,
            "NaN",
        ),
        (
            "ancient timestamp",
            rw(one_series("m", &[], 1.0, 946_684_800_000), pb, "snappy"),
            400,
            "older than max_sample_age",
        ),
        (
            "future timestamp",
            rw(one_series("m", &[], 1.0, now + 86_400_000), pb, "snappy"),
            400,
            "newer than max_sample_future",
        ),
        (
            "too many series",
            rw(
                remote_write_body(&WriteRequest {
                    timeseries: too_many,
                    metadata: vec![],
                }),
                pb,
                "snappy",
            ),
            413,
            "more than 100 series in one request",
        ),
        (
            "wrong content type (remote write)",
            rw(one_series("m", &[], 1.0, now), "text/plain", "snappy"),
            415,
            "application/x-protobuf",
        ),
        (
            "missing snappy encoding",
            rw(one_series("m", &[], 1.0, now), pb, ""),
            415,
            "snappy",
        ),
        (
            "wrong content type (JSON push)",
            http.post(gw.url("/api/v1/push"))
                .header("Authorization", KEY)
                .header("Content-Type", "text/plain")
                .body("{}")
                .send()
                .unwrap(),
            415,
            "application/json",
        ),
        (
            "JSON typo",
            http.post(gw.url("/api/v1/push"))
                .header("Authorization", KEY)
                .json(&serde_json::json!({"metrics":[{"name":"m","valeu":1}]}))
                .send()
                .unwrap(),
            400,
            "valeu",
        ),
        (
            "missing API key",
            http.post(gw.url("/api/v1/write"))
                .body(one_series("m", &[], 1.0, now))
                .send()
                .unwrap(),
            401,
            "missing Authorization",
        ),
        (
            "wrong API key",
            http.post(gw.url("/api/v1/write"))
                .header("Authorization", "Bearer nope-nope-nope-nope")
                .body(one_series("m", &[], 1.0, now))
                .send()
                .unwrap(),
            401,
            "invalid API key",
        ),
        (
            "unknown precision",
            http.post(gw.url("/write?precision=fortnight"))
                .header("Authorization", KEY)
                .body("m v=1")
                .send()
                .unwrap(),
            400,
            "unknown precision",
        ),
    ];
    for (what, resp, status, needle) in cases {
        let got = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").is_some();
        let body = resp.text().unwrap();
        assert_eq!(got, status, "{what}: {body}");
        assert!(
            body.contains(needle),
            "{what}: {body:?} does not mention {needle:?}"
        );
        assert!(
            !retry_after,
            "{what}: a client error must not invite a retry"
        );
    }

    // Still serving: a good request after all that is written, with the tenant label.
    let r = rw(
        one_series("still_alive", &[("tenant", "spoofed")], 7.0, now),
        pb,
        "snappy",
    );
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
    let records = read_topic(&topo.topic, topo.partitions, Duration::from_secs(20), |r| {
        samples_by_key(r, topo.partitions).contains_key(r#"still_alive{tenant="acme"}"#)
    });
    let got = samples_by_key(&records, topo.partitions);
    assert_eq!(
        got[r#"still_alive{tenant="acme"}"#],
        vec![Sample::new(now, 7.0)]
    );
    // Nothing of the refused requests reached Kafka.
    assert_eq!(got.len(), 1, "{:?}", got.keys().collect::<Vec<_>>());
    let batch = weir_contract::avro::Decoder::new()
        .decode(&records[0].payload)
        .unwrap();
    assert_eq!(batch.series[0].tenant.as_deref(), Some("acme"));
}

#[test]
fn a_partly_bad_request_writes_its_good_samples_and_names_the_first_bad_one() {
    ensure_stack();
    let (topo, gw) = strict_gateway();
    let now = now_ms();
    let body = format!("ok_metric,dev=a value=1 {now}\nthis is not line protocol\nbad.metric,dev=b value=2 {}\nok_metric,dev=c value=3 {now}\n", now - 7_200_000);
    let r = client()
        .post(gw.url("/write?precision=ms"))
        .header("Authorization", KEY)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let msg = r.json::<serde_json::Value>().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("rejected 2 of 4 samples (2 written); first: line protocol entry 2"),
        "{msg}"
    );
    let records = read_topic(&topo.topic, topo.partitions, Duration::from_secs(20), |r| {
        sample_count(r) >= 2
    });
    let got = samples_by_key(&records, topo.partitions);
    let keys: Vec<&String> = got.keys().collect();
    assert_eq!(
        keys,
        vec![
            r#"ok_metric{dev="a",tenant="acme"}"#,
            r#"ok_metric{dev="c",tenant="acme"}"#
        ]
    );
}

#[test]
fn without_kafka_the_gateway_is_alive_but_not_ready_and_answers_503() {
    ensure_stack();
    let port = free_port();
    let topic = unique("test.raw");
    let yaml = format!(
        "version: 1\nkafka:\n  bootstrap_servers: 127.0.0.1:{port}\ntopics:\n  {topic}: {{partitions: 1}}\ngateway:\n  listen: 127.0.0.1:0\n  topic: {topic}\n"
    );
    let topo = TestTopology::from_yaml(&yaml, topic, 1);
    let gw = Gateway::spawn_gateway(&topo);
    let addr = gw.addr;
    let http = client();
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let ready = http.get(format!("http://{addr}/readyz")).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let r = http
        .post(format!("http://{addr}/api/v1/push"))
        .json(&serde_json::json!({"metrics":[{"name":"m","value":1}]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        r.headers().get("retry-after").is_some(),
        "503 says when to retry"
    );
}
