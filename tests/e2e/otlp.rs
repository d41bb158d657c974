//! OTLP end to end with the OpenTelemetry Python SDK (PyPI `opentelemetry-sdk` and its
//! OTLP exporters): `tests/python/otlp_send.py` → gateway `/v1/metrics` → Kafka →
//! tsdb-writer → VictoriaMetrics. What lands must be exactly the series Prometheus' OTLP
//! translation gives; each expected series names the rule it follows.
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use weir_e2e::pipeline::Pipeline;
use weir_e2e::*;

fn send(kind: &str, endpoint: &str, instance: &str, extra: &[&str]) {
    let script = repo_root().join("tests/python/otlp_send.py");
    let out = Command::new(python())
        .arg(&script)
        .args([kind, endpoint, instance])
        .args(extra)
        .output()
        .expect("run the OpenTelemetry SDK sender (scripts/stack.sh install makes the venv)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "otlp_send.py failed: {stderr}");
    // The SDK logs a failed export instead of failing: any such line is a failure here.
    assert!(
        !stderr.contains("Failed to export"),
        "the SDK reported an export problem: {stderr}"
    );
}

/// What `otlp_send.py` sends, as Prometheus' OTLP translation writes it.
fn expected(instance: &str) -> BTreeMap<String, f64> {
    let id = format!("instance=\"{instance}\",job=\"shop/checkout\"");
    [
        // A monotonic cumulative sum is a counter: `_total`; the unit `{request}` is an
        // annotation and adds no word; `http.method` → `http_method`;
        // service.namespace/service.name → job, service.instance.id → instance.
        (
            format!("http_server_requests_total{{http_method=\"GET\",{id}}}"),
            5.0,
        ),
        // A non-monotonic sum (up-down counter) is a gauge, no suffix.
        (format!("queue_depth{{{id}}}"), 5.0),
        // A gauge of unit `1` gets `_ratio`.
        (format!("cpu_utilization_ratio{{{id}}}"), 0.25),
        // A histogram: the unit's word (`ms` → `milliseconds`), cumulative `_bucket{le}`
        // with `+Inf` = the count, `_sum`, `_count`.
        (
            format!("http_server_duration_milliseconds_bucket{{{id},le=\"5\"}}"),
            1.0,
        ),
        (
            format!("http_server_duration_milliseconds_bucket{{{id},le=\"10\"}}"),
            2.0,
        ),
        (
            format!("http_server_duration_milliseconds_bucket{{{id},le=\"25\"}}"),
            3.0,
        ),
        (
            format!("http_server_duration_milliseconds_bucket{{{id},le=\"+Inf\"}}"),
            4.0,
        ),
        (
            format!("http_server_duration_milliseconds_sum{{{id}}}"),
            52.0,
        ),
        (
            format!("http_server_duration_milliseconds_count{{{id}}}"),
            4.0,
        ),
        // The resource's other attributes go to target_info, value 1.
        (format!("target_info{{host_name=\"node-3\",{id}}}"), 1.0),
    ]
    .into_iter()
    .collect()
}

fn landed(vm: &Vm, instance: &str) -> BTreeMap<String, f64> {
    let want = expected(instance).len();
    vm.wait_for(
        &format!("{{instance=\"{instance}\"}}"),
        Duration::from_secs(60),
        |g| g.len() >= want,
    )
    .into_iter()
    .map(|(k, points)| (k, points.last().map_or(f64::NAN, |p| p.1)))
    .collect()
}

#[test]
fn the_python_sdk_over_otlp_grpc_lands_as_over_http() {
    ensure_stack();
    let vm = Vm::start();
    let port = free_port();
    let p = Pipeline::with_gateway(
        &vm,
        2,
        &format!("otlp: {{grpc_listen: '127.0.0.1:{port}'}}"),
    );
    let gw = Gateway::start(&p.topo);
    let _writer = p.writer();
    let instance = format!("{}-grpc", p.run);
    send("grpc", &format!("127.0.0.1:{port}"), &instance, &[]);
    assert_eq!(landed(&vm, &instance), expected(&instance));
    assert!(
        metric(
            &gw,
            "weir_gateway_samples_total{protocol=\"otlp_grpc\",outcome=\"accepted\"} "
        ) >= 10.0
    );
}

#[test]
fn the_python_sdk_over_otlp_http_lands_as_prometheus_translates_it() {
    ensure_stack();
    let vm = Vm::start();
    let p = Pipeline::new(&vm, 2);
    let gw = Gateway::start(&p.topo);
    let _writer = p.writer();
    let endpoint = gw.url("/v1/metrics");
    for (instance, extra) in [
        (format!("{}-plain", p.run), vec![]),
        (format!("{}-gzip", p.run), vec!["gzip"]),
    ] {
        send("http", &endpoint, &instance, &extra);
        assert_eq!(landed(&vm, &instance), expected(&instance), "{instance}");
    }
    assert!(
        metric(
            &gw,
            "weir_gateway_samples_total{protocol=\"otlp\",outcome=\"accepted\"} "
        ) >= 20.0
    );
}
