#!/usr/bin/env bash
# Window-engine benchmark, one command: the rollup dataflow (1m, 5m from 1m, 1h from 5m)
# in process over 100,000 series, no Kafka; samples per CPU-second of one worker.
#   load/bench-window.sh [--series N] [--samples-per-series N] [--workers N] [--runs N]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
cargo build --release -q -p weir-load
exec target/release/weir-load bench-window "$@"
