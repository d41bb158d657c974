#!/usr/bin/env python3
"""Checks the Kubernetes manifests strictly, offline: each overlay is built with
`kubectl kustomize`, then

  - every built-in kind is validated by kubernetes-validate (strict: unknown fields fail);
  - every KEDA object against KEDA's schema (cloudcoil-models-keda, every model made to
    refuse unknown fields), and each kafka trigger's free-form metadata against the keys
    KEDA's kafka scaler reads;
  - cross references no schema can see: selectors match pod labels, probe, container and
    scrape ports are the role's listen port in the generated topology, nothing listens on
    loopback, no HPA and ScaledObject scale the same Deployment, every ConfigMap a pod
    mounts is generated, rule files the topology names are in the mounted ConfigMap, KEDA
    triggers name the topology's groups, topics and brokers, and maxReplicaCount x
    members per pod stays within the partitions of the group's topic.

    check-k8s.py [--kubectl BIN] [--kubernetes-version 1.37.0] OVERLAY_DIR...

Prints every problem and exits 1 when there is one. Run by the test suite
(tests/e2e/manifests.rs), which also shows that broken copies fail.
"""
import argparse
import inspect
import subprocess
import sys

import kubernetes_validate
import pydantic
import yaml

# The keys KEDA's kafka scaler reads (KEDA 2.16, pkg/scalers/kafka_scaler.go). KEDA's
# CRD leaves trigger metadata free-form, so a misspelt key would otherwise pass and be
# ignored by KEDA at run time.
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "version", "partitionLimitation", "sasl", "tls",
    "unsafeSsl", "ensureEvenDistributionOfPartitions",
}
KAFKA_TRIGGER_REQUIRED = {"bootstrapServers", "consumerGroup", "topic"}
# The topology section and the consumer groups of each role; members per pod.
ROLE_LISTEN = {"gateway": "gateway", "tsdb-writer": "tsdb_writer", "rollup": "rollup", "alerter": "alerter"}
TOPOLOGY_MOUNT_ENV = "WEIR_TOPOLOGY"


def keda_models():
    """KEDA's ScaledObject and ScaledJob, with every pydantic model of the package made
    to refuse unknown fields (the package's default is to ignore them)."""
    import cloudcoil.models.keda.v1alpha1 as keda

    models = []
    for name, mod in list(sys.modules.items()):
        if not name.startswith("cloudcoil") or mod is None:
            continue
        for obj in vars(mod).values():
            if inspect.isclass(obj) and issubclass(obj, pydantic.BaseModel) and obj.__module__ == name:
                models.append(obj)
    for m in models:
        m.model_config["extra"] = "forbid"
    for m in models:
        m.model_rebuild(force=True)
    return {"ScaledObject": keda.ScaledObject, "ScaledJob": keda.ScaledJob}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def port_of(listen):
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class Overlay:
    def __init__(self, path, kubectl):
        out = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{path}: kubectl kustomize failed:\n{out.stderr}")
        self.path = path
        self.docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        self.problems = []

    def problem(self, doc, msg):
        where = f"{doc['kind']}/{doc['metadata']['name']}" if doc else self.path
        self.problems.append(f"{self.path}: {where}: {msg}")

    def of_kind(self, *kinds):
        return [d for d in self.docs if d["kind"] in kinds]

    def pod_templates(self):
        """(owner doc, pod template) of every workload."""
        out = []
        for d in self.of_kind("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((d, d["spec"]["template"]))
        return out

    def topology(self):
        cms = [c for c in self.of_kind("ConfigMap") if "topology.yaml" in c.get("data", {})]
        if len(cms) != 1:
            self.problem(None, f"expected one generated ConfigMap holding topology.yaml, found {len(cms)}")
            return None, None
        return cms[0], yaml.safe_load(cms[0]["data"]["topology.yaml"])

    # -- schemas ------------------------------------------------------------------------
    def validate_schemas(self, version, keda):
        for d in self.docs:
            if d["kind"] in keda:
                try:
                    keda[d["kind"]].model_validate(d)
                except pydantic.ValidationError as e:
                    self.problem(d, f"KEDA schema: {e}")
                for i, t in enumerate(d.get("spec", {}).get("triggers", [])):
                    if t.get("type") != "kafka":
                        continue
                    meta = t.get("metadata", {})
                    for k in sorted(set(meta) - KAFKA_TRIGGER_KEYS):
                        self.problem(d, f"triggers[{i}].metadata.{k}: not a key of KEDA's kafka scaler")
                    for k in sorted(KAFKA_TRIGGER_REQUIRED - set(meta)):
                        self.problem(d, f"triggers[{i}].metadata.{k}: missing")
                continue
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                self.problem(d, f"no schema for {d['apiVersion']} {d['kind']} (unknown kind)")
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                self.problem(d, f"schema: {path}: {e.message}")

    # -- cross references ---------------------------------------------------------------
    def check_selectors(self):
        templates = self.pod_templates()
        for owner, t in templates:
            sel = owner["spec"].get("selector", {}).get("matchLabels")
            if owner["kind"] != "Job" and not matches(sel, t["metadata"].get("labels", {})):
                self.problem(owner, f"selector {sel} does not match its own pod labels")
            for i, c in enumerate(t["spec"].get("topologySpreadConstraints", [])):
                s = c.get("labelSelector", {}).get("matchLabels")
                if not matches(s, t["metadata"].get("labels", {})):
                    self.problem(owner, f"topologySpreadConstraints[{i}] selects {s}, not these pods")
        pods = [t["metadata"].get("labels", {}) for _, t in templates]
        for d in self.of_kind("Service"):
            sel = d["spec"].get("selector")
            if not any(matches(sel, p) for p in pods):
                self.problem(d, f"selector {sel} matches no pod")
        for d in self.of_kind("PodDisruptionBudget"):
            sel = d["spec"].get("selector", {}).get("matchLabels")
            if not any(matches(sel, p) for p in pods):
                self.problem(d, f"selector {sel} matches no pod")
        for d in self.of_kind("NetworkPolicy"):
            sel = d["spec"].get("podSelector", {}).get("matchLabels")
            if not any(matches(sel, p) for p in pods):
                self.problem(d, f"podSelector {sel} matches no pod")
        # A Service's targetPort (by name) must be a port of the pods it selects.
        for d in self.of_kind("Service"):
            sel = d["spec"].get("selector")
            names = set()
            for _, t in templates:
                if matches(sel, t["metadata"].get("labels", {})):
                    for c in t["spec"]["containers"]:
                        names |= {p.get("name") for p in c.get("ports", [])}
                        names |= {p["containerPort"] for p in c.get("ports", [])}
            for p in d["spec"].get("ports", []):
                if p.get("targetPort", p["port"]) not in names:
                    self.problem(d, f"targetPort {p.get('targetPort')} is not a port of the selected pods")

    def check_ports(self, topo):
        for owner, t in self.pod_templates():
            for c in t["spec"]["containers"]:
                role = (c.get("args") or [None])[0]
                if role not in ROLE_LISTEN:
                    continue
                section = (topo or {}).get(ROLE_LISTEN[role]) or {}
                listen = section.get("listen")
                if not listen:
                    self.problem(owner, f"the topology sets no {ROLE_LISTEN[role]}.listen")
                    continue
                host, port = port_of(listen)
                if host in ("127.0.0.1", "::1", "localhost"):
                    self.problem(owner, f"{ROLE_LISTEN[role]}.listen {listen} is loopback: probes and scrapes cannot reach it")
                if "--listen" in (c.get("args") or []):
                    self.problem(owner, "--listen in args: the topology's listen address is the one place for it")
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
                if port not in ports.values():
                    self.problem(owner, f"containerPort {sorted(ports.values())} is not the topology's {ROLE_LISTEN[role]}.listen port {port}")
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    hg = (c.get(probe) or {}).get("httpGet")
                    if not hg:
                        continue
                    p = ports.get(hg["port"], hg["port"])
                    if p != port:
                        self.problem(owner, f"{probe} port {hg['port']} ({p}) is not the topology's {ROLE_LISTEN[role]}.listen port {port}")
                ann = t["metadata"].get("annotations", {}).get("prometheus.io/port")
                if ann is not None and int(ann) != port:
                    self.problem(owner, f"prometheus.io/port {ann} is not the topology's {ROLE_LISTEN[role]}.listen port {port}")

    def check_configmaps(self, topo):
        generated = {c["metadata"]["name"]: c for c in self.of_kind("ConfigMap")}
        for owner, t in self.pod_templates():
            vols = {}
            for v in t["spec"].get("volumes", []):
                if "configMap" in v:
                    name = v["configMap"]["name"]
                    vols[v["name"]] = name
                    if name not in generated:
                        self.problem(owner, f"volume {v['name']} mounts ConfigMap {name}, which the overlay does not generate")
            for c in t["spec"]["containers"]:
                mounts = {m["mountPath"].rstrip("/"): vols.get(m["name"]) for m in c.get("volumeMounts", [])}
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                topo_path = env.get(TOPOLOGY_MOUNT_ENV)
                if topo_path:
                    self.check_file_in_mount(owner, mounts, generated, topo_path, TOPOLOGY_MOUNT_ENV)
                if (c.get("args") or [None])[0] == "alerter":
                    for f in (topo or {}).get("alerter", {}).get("rule_files", []):
                        self.check_file_in_mount(owner, mounts, generated, f, "alerter.rule_files")

    def check_file_in_mount(self, owner, mounts, generated, path, what):
        d, _, f = path.rpartition("/")
        cm = mounts.get(d)
        if cm is None:
            self.problem(owner, f"{what} {path}: no ConfigMap is mounted at {d}")
        elif cm in generated and f not in generated[cm].get("data", {}):
            self.problem(owner, f"{what} {path}: ConfigMap {cm} mounted at {d} has no key {f}")

    def check_scalers(self, topo):
        deployments = {d["metadata"]["name"]: d for d in self.of_kind("Deployment")}
        scaled = {}
        for d in self.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
            target = d["spec"]["scaleTargetRef"]["name"]
            if target not in deployments:
                self.problem(d, f"scaleTargetRef {target}: no such Deployment")
            if target in scaled:
                self.problem(d, f"scales {target}, which {scaled[target]} scales too")
            scaled[target] = f"{d['kind']}/{d['metadata']['name']}"
        if topo is None:
            return
        groups = topo.get("consumer_groups", {})
        topics = topo.get("topics", {})
        brokers = topo.get("kafka", {}).get("bootstrap_servers")
        for d in self.of_kind("ScaledObject"):
            dep = deployments.get(d["spec"]["scaleTargetRef"]["name"])
            if dep is None:
                continue
            role = (dep["spec"]["template"]["spec"]["containers"][0].get("args") or [None])[0]
            section = topo.get(ROLE_LISTEN.get(role, ""), {}) or {}
            max_replicas = d["spec"].get("maxReplicaCount", 100)
            for i, t in enumerate(d["spec"].get("triggers", [])):
                if t.get("type") != "kafka":
                    continue
                m = t.get("metadata", {})
                group, topic = m.get("consumerGroup"), m.get("topic")
                if m.get("bootstrapServers") != brokers:
                    self.problem(d, f"triggers[{i}].metadata.bootstrapServers {m.get('bootstrapServers')} is not the topology's kafka.bootstrap_servers {brokers}")
                spec = groups.get(group)
                merge = role == "alerter" and group == section.get("merge_group")
                if spec is None and not merge:
                    self.problem(d, f"triggers[{i}]: consumer group {group} is not in the topology")
                    continue
                if spec is not None and spec.get("role") != role:
                    self.problem(d, f"triggers[{i}]: group {group} is role {spec.get('role')}, the Deployment runs {role}")
                if spec is not None and topic not in spec.get("topics", []):
                    self.problem(d, f"triggers[{i}]: group {group} does not read {topic}")
                if merge and topic != section.get("partials_topic", "alerts.partials"):
                    self.problem(d, f"triggers[{i}]: the merge group reads {section.get('partials_topic', 'alerts.partials')}, not {topic}")
                if topic not in topics:
                    self.problem(d, f"triggers[{i}]: topic {topic} is not in the topology")
                    continue
                # Every timely worker of a rollup or stage-one alerter pod is a member.
                per_pod = 1 if (merge or role == "tsdb-writer") else int(section.get("workers", 1))
                partitions = int(topics[topic].get("partitions", 1))
                if max_replicas * per_pod > partitions:
                    self.problem(d, f"maxReplicaCount {max_replicas} x {per_pod} members per pod exceeds the {partitions} partitions of {topic}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--kubernetes-version", default="1.37.0")
    ap.add_argument("overlays", nargs="+")
    a = ap.parse_args()
    keda = keda_models()
    problems = []
    for path in a.overlays:
        o = Overlay(path, a.kubectl)
        o.validate_schemas(a.kubernetes_version, keda)
        _, topo = o.topology()
        o.check_selectors()
        o.check_ports(topo)
        o.check_configmaps(topo)
        o.check_scalers(topo)
        kinds = sorted({d["kind"] for d in o.docs})
        print(f"{path}: {len(o.docs)} objects ({', '.join(kinds)}), {len(o.problems)} problems")
        problems += o.problems
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
