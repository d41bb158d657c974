#!/usr/bin/env bash
# Replay benchmark, one command: the rollup benchmark's records preloaded on tansu and
# rolled up by the live `weir rollup`, then the same records read again by
# `weir replay --into rollup` (recomputing every window into ClickHouse) and
# `weir replay --into tsdb-writer` (into a VictoriaMetrics of its own); samples per
# CPU-second and per wall second of each, beside the live rollup's figure.
#   load/bench-replay.sh [--series N] [--samples-per-series N]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-rollup --replay --weir target/release/weir "$@"
