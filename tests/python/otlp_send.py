"""Sends metrics to an OTLP endpoint with the OpenTelemetry Python SDK, as an instrumented
service would: a counter, an up-down counter, an observable gauge and a histogram, under
one resource. Used by tests/e2e/otlp.rs, which knows the values below.

    otlp_send.py http URL INSTANCE [gzip]    # OTLP/HTTP protobuf, e.g. http://127.0.0.1:4318/v1/metrics
    otlp_send.py grpc HOST:PORT INSTANCE     # OTLP/gRPC
"""
import sys

from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def exporter(kind, endpoint, gzip):
    if kind == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=endpoint,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
            timeout=10,
        )
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10)


def main():
    kind, endpoint, instance = sys.argv[1], sys.argv[2], sys.argv[3]
    gzip = len(sys.argv) > 4 and sys.argv[4] == "gzip"
    # Resource(...) as given, without the SDK's defaults, so target_info is known exactly.
    resource = Resource(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": instance,
            "host.name": "node-3",
        }
    )
    # A long interval: the test flushes once, by hand, so each series gets one point
    # before the final export at shutdown.
    reader = PeriodicExportingMetricReader(
        exporter(kind, endpoint, gzip), export_interval_millis=3_600_000
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("weir.test", "1.0")

    requests = meter.create_counter("http.server.requests", unit="{request}")
    requests.add(3, {"http.method": "GET"})
    requests.add(2, {"http.method": "GET"})

    depth = meter.create_up_down_counter("queue.depth")
    depth.add(7)
    depth.add(-2)

    meter.create_observable_gauge(
        "cpu.utilization", callbacks=[lambda _options: [Observation(0.25)]], unit="1"
    )

    duration = meter.create_histogram(
        "http.server.duration", unit="ms", explicit_bucket_boundaries_advisory=[5.0, 10.0, 25.0]
    )
    for v in (3, 7, 12, 30):
        duration.record(v)

    if not provider.force_flush(timeout_millis=15_000):
        sys.exit("force_flush did not complete")
    provider.shutdown()


if __name__ == "__main__":
    main()
