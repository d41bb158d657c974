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
