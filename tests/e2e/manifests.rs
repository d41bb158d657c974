//! The deployment files, checked as strictly as offline allows: the Kubernetes overlays
//! by scripts/check-k8s.py (kubectl kustomize, kubernetes-validate --strict, KEDA's
//! schema with unknown fields refused, the project's own cross references), the
//! topologies they carry by `weir check`, the compose files by `podman-compose config`.
//! Each check is also shown to fail: throwaway copies with one mistake each.
use std::path::{Path, PathBuf};
use std::process::Command;

use weir_e2e::*;

const OVERLAYS: [&str; 2] = ["k8s/overlays/local", "k8s/overlays/production"];

fn check_k8s(root: &Path) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo_root().join("scripts/check-k8s.py"))
        .args(OVERLAYS.iter().map(|o| root.join(o)))
        .output()
        .expect("run scripts/check-k8s.py");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of the repository's k8s/ in a temporary directory, `edit` applied to one file.
fn broken_copy(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo_root().join("k8s"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let path = dir.path().join("k8s").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?} to break");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    dir
}

fn assert_refused(dir: &tempfile::TempDir, expected: &str) {
    let (ok, out) = check_k8s(dir.path());
    assert!(!ok, "a broken manifest passed:\n{out}");
    assert!(
        out.contains(expected),
        "the check failed, but not naming {expected:?}:\n{out}"
    );
}

#[test]
fn the_overlays_pass_the_strict_checks() {
    let (ok, out) = check_k8s(&repo_root());
    assert!(ok, "{out}");
    for o in OVERLAYS {
        assert!(out.contains(&format!("{o}: 20 objects")), "{out}");
    }
}

#[test]
fn the_topologies_of_the_overlays_and_compose_are_valid() {
    for f in [
        "k8s/overlays/local/topology.yaml",
        "k8s/overlays/production/topology.yaml",
        "docker/topology.yaml",
    ] {
        let out = weir(&["check", "-f", repo_root().join(f).to_str().unwrap()]);
        assert!(out.status.success(), "{f}: {}", out.stderr_text());
    }
}

#[test]
fn the_local_overlay_carries_the_repository_rules_unchanged() {
    // kustomize reads only files under the overlay, so it holds a copy.
    let copy = std::fs::read(repo_root().join("k8s/overlays/local/rules/fleet.rules.yml")).unwrap();
    let rules = std::fs::read(repo_root().join("rules/fleet.rules.yml")).unwrap();
    assert!(
        copy == rules,
        "k8s/overlays/local/rules/fleet.rules.yml differs from rules/fleet.rules.yml: copy it over"
    );
}

#[test]
fn a_wrong_keda_trigger_field_fails() {
    // A misspelt key of the scaler's free-form metadata ...
    assert_refused(
        &broken_copy(
            "base/scaledobjects.yaml",
            "lagThreshold: \"50000\"",
            "lagTreshold: \"50000\"",
        ),
        "triggers[0].metadata.lagTreshold: not a key of KEDA's kafka scaler",
    );
    // ... and a field KEDA's schema does not have.
    assert_refused(
        &broken_copy(
            "base/scaledobjects.yaml",
            "maxReplicaCount: 8",
            "maxReplicas: 8",
        ),
        "spec.maxReplicas\n  Extra inputs are not permitted",
    );
}

#[test]
fn a_selector_that_matches_no_pod_fails() {
    assert_refused(
        &broken_copy(
            "base/gateway.yaml",
            "spec:\n  selector: {app.kubernetes.io/name: weir, app.kubernetes.io/component: gateway}",
            "spec:\n  selector: {app.kubernetes.io/name: weir, app.kubernetes.io/component: gatway}",
        ),
        "Service/weir-gateway: selector {'app.kubernetes.io/component': 'gatway', 'app.kubernetes.io/name': 'weir'} matches no pod",
    );
    assert_refused(
        &broken_copy(
            "base/rollup.yaml",
            "  maxUnavailable: 1\n  selector:\n    matchLabels: {app.kubernetes.io/name: weir, app.kubernetes.io/component: rollup}",
            "  maxUnavailable: 1\n  selector:\n    matchLabels: {app.kubernetes.io/name: weir, app.kubernetes.io/component: rolup}",
        ),
        "PodDisruptionBudget/weir-rollup: selector",
    );
}

#[test]
fn a_port_that_is_not_the_topologys_fails() {
    assert_refused(
        &broken_copy(
            "base/rollup.yaml",
            "containerPort: 9302",
            "containerPort: 9402",
        ),
        "Deployment/weir-rollup: readinessProbe port http (9402) is not the topology's rollup.listen port 9302",
    );
    // The topology changed instead of the manifest: the same mismatch, seen from there.
    assert_refused(
        &broken_copy(
            "overlays/production/topology.yaml",
            "listen: 0.0.0.0:9301",
            "listen: 0.0.0.0:9401",
        ),
        "Deployment/weir-tsdb-writer: containerPort [9301] is not the topology's tsdb_writer.listen port 9401",
    );
    // Loopback in a pod is unreachable for probes and scrapes.
    assert_refused(
        &broken_copy(
            "overlays/local/topology.yaml",
            "listen: 0.0.0.0:8080",
            "listen: 127.0.0.1:8080",
        ),
        "gateway.listen 127.0.0.1:8080 is loopback",
    );
}

#[test]
fn scaling_mistakes_fail() {
    // More members than partitions: 6 pods x 4 workers over 24 partitions of metrics.raw.
    assert_refused(
        &broken_copy(
            "overlays/production/kustomization.yaml",
            "path: /spec/maxReplicaCount, value: 6}\n  - target: {kind: ScaledObject, name: weir-tsdb-writer}",
            "path: /spec/maxReplicaCount, value: 7}\n  - target: {kind: ScaledObject, name: weir-tsdb-writer}",
        ),
        "ScaledObject/weir-rollup: maxReplicaCount 7 x 4 members per pod exceeds the 24 partitions of metrics.raw",
    );
    // An HPA and a ScaledObject on one Deployment fight over its replicas.
    assert_refused(
        &broken_copy(
            "base/gateway.yaml",
            "scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: weir-gateway}",
            "scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: weir-rollup}",
        ),
        "which HorizontalPodAutoscaler/weir-gateway scales too",
    );
    // A trigger on a group the topology does not have.
    assert_refused(
        &broken_copy(
            "base/scaledobjects.yaml",
            "consumerGroup: tsdb-writers",
            "consumerGroup: tsdb-writer",
        ),
        "consumer group tsdb-writer is not in the topology",
    );
}

#[test]
fn a_configmap_that_is_not_generated_fails() {
    assert_refused(
        &broken_copy(
            "base/alerter.yaml",
            "configMap: {name: weir-rules}",
            "configMap: {name: weir-alert-rules}",
        ),
        "volume rules mounts ConfigMap weir-alert-rules, which the overlay does not generate",
    );
    // A rule file the topology names but the ConfigMap does not hold.
    assert_refused(
        &broken_copy(
            "overlays/local/topology.yaml",
            "rule_files: [/etc/weir/rules/fleet.rules.yml]",
            "rule_files: [/etc/weir/rules/other.rules.yml]",
        ),
        "alerter.rule_files /etc/weir/rules/other.rules.yml: ConfigMap weir-rules-",
    );
}

/// `podman-compose config` (what the container test runs) and Debian's `docker-compose
/// config` (which validates against the compose specification's schema: unknown keys
/// and undefined services fail, where podman-compose prints them back).
fn compose_config(file: &Path) -> Vec<(&'static str, std::process::Output)> {
    let podman_compose: PathBuf = python().with_file_name("podman-compose");
    let run = |cmd: &mut Command| {
        cmd.env(
            "CONTAINERS_CONF",
            repo_root().join("docker/containers.conf"),
        )
        .arg("-f")
        .arg(file)
        .arg("config")
        .output()
        .expect("run compose")
    };
    vec![
        ("podman-compose", run(&mut Command::new(podman_compose))),
        ("docker-compose", run(&mut Command::new("docker-compose"))),
    ]
}

fn ensure_container_tools() {
    let out = Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib.sh && container_engine >/dev/null")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_files_pass_compose_config() {
    ensure_stack();
    ensure_container_tools();
    for f in ["docker/compose.yaml", "docker/compose.stack.yaml"] {
        for (tool, out) in compose_config(&repo_root().join(f)) {
            assert!(
                out.status.success(),
                "{tool} config {f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            for role in ["gateway", "tsdb-writer", "rollup", "alerter"] {
                assert!(
                    text.contains(&format!("  {role}:\n")),
                    "{tool} {f}: no {role}:\n{text}"
                );
            }
        }
    }
    // A mistake in a copy fails.
    let text = std::fs::read_to_string(repo_root().join("docker/compose.stack.yaml")).unwrap();
    for (from, to, expected) in [
        (
            "tansu: {condition: service_started}",
            "tansuu: {condition: service_started}",
            "depends on service 'tansuu' which is undefined",
        ),
        (
            "    start_period: 30s",
            "    start_perid: 30s",
            "start_perid",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("compose.yaml");
        std::fs::write(&copy, text.replacen(from, to, 1)).unwrap();
        let (_, out) = compose_config(&copy).remove(1);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{from} -> {to} passed: {err}"
        );
    }
}
