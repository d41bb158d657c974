use super::*;

#[test]
fn embedded_local_topology_is_valid() {
    let t = Topology::from_yaml_str(LOCAL_TOPOLOGY, "local.yaml").expect("valid");
    assert_eq!(t.gateway.topic, "metrics.raw");
    assert!(t.topics["metrics.raw"].partitions > 1);
    assert_eq!(
        t.topics["alerts.state"].cleanup_policy,
        CleanupPolicy::Compact
    );
    for g in ["tsdb-writers", "rollup-aggregators", "alerting-engine"] {
        assert!(t.consumer_groups.contains_key(g), "{g}");
    }
}

fn field_of(yaml: &str) -> String {
    let e = Topology::from_yaml_str(yaml, "t.yaml").expect_err("invalid");
    e.field().unwrap_or("").to_string()
}

fn with(patch: &str, replacement: &str) -> String {
    assert!(LOCAL_TOPOLOGY.contains(patch), "{patch}");
    LOCAL_TOPOLOGY.replacen(patch, replacement, 1)
}

#[test]
fn type_errors_name_the_field() {
    let y = with("    partitions: 8\n", "    partitions: eight\n");
    assert_eq!(field_of(&y), "topics.metrics.raw.partitions");
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let y = with(
        "    max_labels: 30\n",
        "    max_labels: 30\n    max_lables: 3\n",
    );
    let e = Topology::from_yaml_str(&y, "t.yaml")
        .expect_err("invalid")
        .to_string();
    assert!(e.contains("gateway.validation"), "{e}");
    assert!(e.contains("max_lables"), "{e}");
}

#[test]
fn references_are_checked() {
    let y = with(
        "    topics: [metrics.raw]\n    sink: victoriametrics",
        "    topics: [metrics.nope]\n    sink: victoriametrics",
    );
    assert_eq!(field_of(&y), "consumer_groups.tsdb-writers.topics[0]");
    let y = with("  topic: metrics.raw\n", "  topic: metrics.other\n");
    assert_eq!(field_of(&y), "gateway.topic");
    let y = with("    sink: clickhouse", "    sink: nowhere");
    assert_eq!(field_of(&y), "consumer_groups.rollup-aggregators.sink");
}

#[test]
fn ranges_are_checked() {
    let y = with("    partitions: 8\n", "    partitions: 0\n");
    assert_eq!(field_of(&y), "topics.metrics.raw.partitions");
    let y = with("    enabled: false\n", "    enabled: true\n");
    assert_eq!(field_of(&y), "gateway.auth.keys");
    let y = with(
        "  confluent_ids: {}\n",
        "  confluent_ids: {7: metrics_batch.v9}\n",
    );
    assert_eq!(field_of(&y), "schemas.confluent_ids.7");
}

#[test]
fn sizes_and_durations_parse() {
    let t = Topology::local();
    assert_eq!(t.gateway.limits.max_body_bytes.as_u64(), 10 * 1024 * 1024);
    assert_eq!(
        t.topics["metrics.raw"].retention,
        Some(std::time::Duration::from_secs(7 * 86400))
    );
    assert_eq!(
        t.topics["metrics.raw"].configs()["retention.ms"],
        (7u64 * 86400 * 1000).to_string()
    );
}

/// The production topology at the end of docs/security.md loads as written.
#[test]
fn the_production_topology_in_the_security_docs_is_valid() {
    let doc = include_str!("../../../../docs/security.md");
    let at = doc.rfind("```yaml\n").expect("a yaml block") + 8;
    let yaml = &doc[at..at + doc[at..].find("```").expect("closed block")];
    for var in ["WEIR_KAFKA_PASSWORD", "WEIR_VM_TOKEN"] {
        std::env::set_var(var, "set-by-the-test");
    }
    let t = Topology::from_yaml_str(yaml, "docs/security.md").unwrap_or_else(|e| panic!("{e}"));
    assert!(t.gateway.tls.is_some() && t.gateway.auth.enabled);
    assert_eq!(
        t.kafka.client.get("security.protocol").map(String::as_str),
        Some("SASL_SSL")
    );
}

#[test]
fn security_settings_are_checked_with_their_path() {
    let y = with(
        "    url: http://127.0.0.1:8123\n",
        "    url: https://127.0.0.1:8123\n    tls: {cert_file: /c.pem}\n",
    );
    assert_eq!(field_of(&y), "sinks.clickhouse.tls.cert_file");
    let y = with(
        "    url: http://127.0.0.1:8123\n",
        "    url: http://127.0.0.1:8123\n    password: env:WEIR_TEST_UNSET_VARIABLE\n    user: weir\n",
    );
    assert_eq!(field_of(&y), "sinks.clickhouse.password");
    let y = with(
        "  listen: 127.0.0.1:8080\n",
        "  listen: 127.0.0.1:8080\n  ops_listen: 127.0.0.1:8080\n",
    );
    assert_eq!(field_of(&y), "gateway.ops_listen");
    let y = with(
        "  listen: 127.0.0.1:8080\n",
        "  listen: 127.0.0.1:8080\n  tenants: {overrides: {acme: {samples_per_second: -1}}}\n",
    );
    assert_eq!(
        field_of(&y),
        "gateway.tenants.overrides.acme.samples_per_second"
    );
}

#[test]
fn api_keys_need_a_tenant_and_one_of_key_and_hash() {
    let y = with(
        "    enabled: false\n    keys: []\n",
        "    enabled: true\n    keys: [{tenant: acme, sha256: 'sha256:abc'}]\n",
    );
    assert_eq!(field_of(&y), "gateway.auth.keys[0].sha256");
    let y = with(
        "    enabled: false\n    keys: []\n",
        "    enabled: true\n    keys: [{tenant: acme}]\n",
    );
    assert_eq!(field_of(&y), "gateway.auth.keys[0].key");
    let y = with(
        "    enabled: false\n    keys: []\n",
        "    enabled: true\n    keys: []\n",
    );
    assert_eq!(field_of(&y), "gateway.auth.keys");
}

#[test]
fn writer_tenancy_is_checked_against_its_sinks() {
    let base = |sink_url: &str, tenancy: &str| {
        format!(
            "version: 1\nkafka: {{bootstrap_servers: 'localhost:9092'}}\ntopics: {{metrics.raw: {{partitions: 1}}, metrics.dlq: {{partitions: 1}}}}\nconsumer_groups: {{tsdb-writers: {{role: tsdb-writer, topics: [metrics.raw], sink: vm}}}}\nsinks:\n  vm: {{type: prometheus_remote_write, url: '{sink_url}'}}\n  ch: {{type: clickhouse, url: 'http://ch:8123', database: weir}}\ntsdb_writer: {{tenancy: {tenancy}}}\n"
        )
    };
    let field = |yaml: String| {
        Topology::from_yaml_str(&yaml, "t.yaml")
            .err()
            .map(|e| (e.field().unwrap_or_default().to_string(), e.to_string()))
    };
    assert_eq!(
        field(base(
            "http://vm/insert/{tenant}/prometheus/api/v1/write",
            "{enabled: true, ids: {acme: '42:0'}}"
        )),
        None
    );
    let (f, m) = field(base("http://vm/api/v1/write", "{enabled: true}")).unwrap();
    assert_eq!(f, "tsdb_writer.tenancy.enabled");
    assert!(m.contains("{tenant}"), "{m}");
    let (f, _) = field(base("http://vm/{tenant}/write", "{enabled: false}")).unwrap();
    assert_eq!(f, "tsdb_writer.tenancy.enabled");
    let (f, m) = field(base(
        "http://vm/api/v1/write",
        "{enabled: true, sinks: {acme: ch}}",
    ))
    .unwrap();
    assert_eq!(f, "tsdb_writer.tenancy.sinks.acme");
    assert!(m.contains("prometheus_remote_write"), "{m}");
    let (f, _) = field(base(
        "http://vm/api/v1/write",
        "{enabled: true, sinks: {acme: nope}}",
    ))
    .unwrap();
    assert_eq!(f, "tsdb_writer.tenancy.sinks.acme");
    let (f, _) = field(base(
        "http://vm/{tenant}",
        "{enabled: true, ids: {acme: '../x'}}",
    ))
    .unwrap();
    assert_eq!(f, "tsdb_writer.tenancy.ids.acme");
    assert!(super::check_tenant_id("42:0").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", "a\nb"] {
        assert!(super::check_tenant_id(bad).is_err(), "{bad:?}");
    }
}
