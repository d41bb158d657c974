#!/usr/bin/env bash
# TSDB writer benchmark, one command: samples per CPU-second of the writer from Kafka
# (tansu) to VictoriaMetrics, then the backlog drain time after a 30 s sink outage at a
# fixed input rate.   load/bench-writer.sh [--samples N] [--rate N] [--outage 30s]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-writer --weir target/release/weir "$@"
