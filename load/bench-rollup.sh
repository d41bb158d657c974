#!/usr/bin/env bash
# Rollup benchmark end to end, one command: samples preloaded on tansu, `weir rollup`
# writes every tier to ClickHouse and the rollup topics; samples per CPU-second of the
# rollup process and wall time.   load/bench-rollup.sh [--series N] [--samples-per-series N]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-rollup --weir target/release/weir "$@"
