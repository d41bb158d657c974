#!/usr/bin/env bash
# Alert latency, one command: a fleet pushed in real time to both a weir gateway (feeding
# `weir alerter`) and a Prometheus with the same rules; p50/p99 from the firing step to
# the event on the alerts topic and to the alert at Alertmanager, for both systems.
#   load/bench-alerter.sh [--series N] [--rules N] [--step 5s] [--out-of-orderness 1s] [--waves N]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-alerter --weir target/release/weir "$@"
