#!/usr/bin/env bash
# Gateway benchmark, one command: builds release binaries, starts the local stack (for
# the tansu run) and measures the gateway's samples per CPU-second for remote write into
# Kafka — against librdkafka's mock cluster and against tansu — plus bytes per sample.
#   load/bench-gateway.sh [extra weir-load bench-gateway flags, e.g. --samples-per-series 10]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-gateway --weir target/release/weir "$@"
