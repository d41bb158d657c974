#!/usr/bin/env python3
"""Independent decoder for the end-to-end tests: reads record values written by weir
with fastavro and the schema file alone, and prints the series as JSON.

usage: decode_fastavro.py SCHEMA.avsc RECORD_FILE...
Each record must be Avro single-object encoded with the schema's fingerprint.
"""
import io
import json
import sys

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form


def main():
    schema_path, files = sys.argv[1], sys.argv[2:]
    with open(schema_path) as f:
        schema_json = json.load(f)
    schema = parse_schema(schema_json)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema_json), "CRC-64-AVRO"))
    out = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] != b"\xc3\x01":
            sys.exit(f"{path}: not single-object encoded (starts {data[:2].hex()})")
        if data[2:10] != fp:
            sys.exit(f"{path}: fingerprint {data[2:10].hex()} is not the schema's {fp.hex()}")
        buf = io.BytesIO(data[10:])
        batch = schemaless_reader(buf, schema, None)
        if buf.read():
            sys.exit(f"{path}: trailing bytes after the datum")
        for s in batch["series"]:
            out.append({
                "file": path,
                "name": s["name"],
                "labels": [[l["name"], l["value"]] for l in s["labels"]],
                # timestamp-millis arrives as a datetime; give back the integer millis
                "samples": [[to_millis(x["timestamp"]), x["value"]] for x in s["samples"]],
                "type": s["type"],
                "unit": s["unit"],
                "tenant": s["tenant"],
            })
    json.dump(out, sys.stdout)


def to_millis(ts):
    if isinstance(ts, int):
        return ts
    import datetime
    delta = ts - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86_400_000) + (delta.seconds * 1000) + (delta.microseconds // 1000)


if __name__ == "__main__":
    main()
