#!/usr/bin/env python3
"""Produce series straight to metrics.raw, as weir's gateway would.

Needs: pip install confluent-kafka fastavro
Run:   python3 produce.py --bootstrap 127.0.0.1:9092 --topic metrics.raw --series 20

What it does, per the data contract (docs/producing.md):
  * key      = canonical series key, e.g. cpu_usage{host="a",region="eu"}
  * partition = Kafka's murmur2 of the key (the Java client's default; in librdkafka
               clients such as confluent-kafka set partitioner=murmur2_random)
  * value    = Avro single-object encoding: C3 01, the schema's 8-byte CRC-64-AVRO
               fingerprint, then the MetricsBatch datum (here a batch of one series)

It prints one JSON line per record it wrote, with the partition Kafka acknowledged.
"""
import argparse
import io
import json
import os
import random
import sys
import time

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "..", "schemas", "avro", "metrics_batch.v1.avsc")


def series_key(name, labels):
    """Prometheus text form with labels sorted by name; values escaped."""
    if not labels:
        return name
    def esc(v):
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    inner = ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="metrics.raw")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--samples", type=int, default=3, help="samples per series")
    args = ap.parse_args()

    with open(args.schema) as f:
        schema_json = json.load(f)
    schema = parse_schema(schema_json)
    # fastavro returns the fingerprint's 8 bytes as hex, in the order the header wants.
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(schema_json), "CRC-64-AVRO"))

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "partitioner": "murmur2_random",   # Java-compatible: the same partition as the gateway
        "enable.idempotence": True,        # implies acks=all
        "compression.type": "lz4",
    })

    now = int(time.time() * 1000)
    sent = []

    def on_delivery(err, msg):
        if err is not None:
            sys.exit(f"delivery failed: {err}")
        sent.append({"key": msg.key().decode(), "partition": msg.partition()})

    rng = random.Random(7)
    records = {}
    for i in range(args.series):
        labels = {"device": f"py-{i:04d}", "site": rng.choice(["ams", "fra", "lhr"]), "note": 'quote " and \\ back'}
        s = {
            "name": "python_produced_temperature_celsius",
            "labels": [{"name": k, "value": v} for k, v in sorted(labels.items())],
            "samples": [{"timestamp": now - 1000 * j, "value": round(rng.uniform(20, 90), 3)} for j in range(args.samples)],
            "type": "GAUGE",
            "unit": "celsius",
            "tenant": None,
        }
        buf = io.BytesIO()
        buf.write(header)
        schemaless_writer(buf, schema, {"series": [s]})
        key = series_key(s["name"], labels)
        records[key] = s
        producer.produce(args.topic, key=key.encode(), value=buf.getvalue(), on_delivery=on_delivery)
    remaining = producer.flush(30)
    if remaining:
        sys.exit(f"{remaining} records were not acknowledged")
    for r in sent:
        print(json.dumps({"key": r["key"], "partition": r["partition"], "series": records[r["key"]]}))


if __name__ == "__main__":
    main()
