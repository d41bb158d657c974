//! `weir topics apply` and `weir check` against the real broker.
use weir_e2e::*;

#[test]
fn topics_apply_creates_what_is_missing_and_reports_drift_without_touching_data() {
    ensure_stack();
    let a = unique("test.apply.a");
    let b = unique("test.apply.b");
    let yaml = |pa: u32, retention: &str| {
        format!(
            "version: 1\nkafka: {{bootstrap_servers: '{}'}}\ntopics:\n  {a}: {{partitions: {pa}, retention: {retention}, compression: lz4}}\n  {b}: {{partitions: 1, cleanup_policy: compact}}\ngateway: {{topic: {a}}}\n",
            bootstrap()
        )
    };
    let t1 = TestTopology::from_yaml(&yaml(3, "1d"), a.clone(), 3);
    let out = weir(&["topics", "apply", "-f", t1.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(
        text.contains(&format!("created  {a}")) && text.contains(&format!("created  {b}")),
        "{text}"
    );

    // Applying again changes nothing.
    let out = weir(&["topics", "apply", "-f", t1.path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        !out.stdout_text().contains("created") && !out.stdout_text().contains("DRIFT"),
        "{}",
        out.stdout_text()
    );

    // A different partition count and retention are reported, not applied.
    let t2 = TestTopology::from_yaml(&yaml(5, "2d"), a.clone(), 5);
    let out = weir(&[
        "topics",
        "apply",
        "--fail-on-drift",
        "-f",
        t2.path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", out.stdout_text());
    let text = out.stdout_text();
    assert!(
        text.contains(&format!(
            "DRIFT    {a}: partitions is 3 on the cluster, the topology wants 5"
        )),
        "{text}"
    );
    assert!(
        text.contains("retention.ms is 86400000 on the cluster, the topology wants 172800000"),
        "{text}"
    );
    let out = weir(&["topics", "apply", "-f", t1.path.to_str().unwrap()]);
    assert!(
        !out.stdout_text().contains("DRIFT"),
        "the cluster was left as it was"
    );
}

#[test]
fn check_names_the_bad_field() {
    let good = TestTopology::from_yaml(
        &std::fs::read_to_string(repo_root().join("topologies/local.yaml")).unwrap(),
        String::new(),
        0,
    );
    let out = weir(&["check", "-f", good.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(out.stdout_text().contains(": ok ("));

    let bad_yaml = std::fs::read_to_string(repo_root().join("topologies/local.yaml"))
        .unwrap()
        .replacen(
            "    max_series_per_request: 50000",
            "    max_series_per_request: lots",
            1,
        );
    let bad = TestTopology::from_yaml(&bad_yaml, String::new(), 0);
    let out = weir(&["check", "-f", bad.path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("gateway.limits.max_series_per_request"),
        "{}",
        out.stderr_text()
    );
}
