"""An independent remote write 2.0 encoder: Python protobuf classes generated (protoc from
grpcio-tools) from schemas/proto/remote_v2.proto, snappy from python-snappy, the request
sent with urllib. Used by tests/e2e/remote_write_v2.rs.

    rw2_send.py URL CONTENT_TYPE RUN T_MS [histogram]

Sends two series (a counter with help and a created timestamp, a gauge with a unit) and,
with `histogram`, a third holding a native histogram. Prints the answer as JSON.
"""
import importlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

import snappy
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(ROOT, "schemas", "proto")


def request_module():
    out = tempfile.mkdtemp(prefix="rw2-")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", os.path.join(PROTO_DIR, "remote_v2.proto")])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("remote_v2_pb2")


def main():
    url, content_type, run, t = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with_histogram = len(sys.argv) > 5 and sys.argv[5] == "histogram"
    pb = request_module()
    symbols = [""]

    def ref(s):
        if s not in symbols:
            symbols.append(s)
        return symbols.index(s)

    def labels(pairs):
        out = []
        for k, v in sorted(pairs):
            out += [ref(k), ref(v)]
        return out

    req = pb.Request()
    counter = req.timeseries.add()
    counter.labels_refs.extend(labels([("__name__", "rw2_requests_total"), ("job", "api"), ("run", run)]))
    counter.samples.add(value=1.0, timestamp=t)
    counter.samples.add(value=3.0, timestamp=t + 1000)
    counter.metadata.type = pb.Metadata.METRIC_TYPE_COUNTER
    counter.metadata.help_ref = ref("Requests served.")
    counter.created_timestamp = t - 60_000
    ex = counter.exemplars.add()
    ex.labels_refs.extend(labels([("trace_id", "abc123")]))
    ex.value = 1.0
    ex.timestamp = t

    gauge = req.timeseries.add()
    gauge.labels_refs.extend(labels([("__name__", "rw2_temperature_celsius"), ("run", run), ("zone", "a")]))
    gauge.samples.add(value=21.5, timestamp=t)
    gauge.metadata.type = pb.Metadata.METRIC_TYPE_GAUGE
    gauge.metadata.unit_ref = ref("celsius")

    if with_histogram:
        h = req.timeseries.add()
        h.labels_refs.extend(labels([("__name__", "rw2_latency_seconds"), ("run", run)]))
        # Declared as raw bytes in weir's schema: any bytes stand for a native histogram.
        h.histograms.append(b"\x08\x01")

    req.symbols.extend(symbols)
    body = snappy.compress(req.SerializeToString())
    http = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "2.0.0",
        },
    )
    try:
        with urllib.request.urlopen(http, timeout=10) as r:
            status, headers, text = r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, dict(e.headers), e.read().decode()
    print(json.dumps({"status": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": text}))


if __name__ == "__main__":
    main()
