#!/usr/bin/env bash
# Noisy-neighbour benchmark, one command: a tenant at 10x its samples/s limit beside a
# quiet tenant on one gateway (librdkafka's mock cluster as the broker); prints the
# quiet tenant's p50/p99 alone and with the noise, alternating runs, and what the noisy
# tenant got through.
#   load/bench-tenants.sh [extra weir-load bench-tenants flags, e.g. --runs 5]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-tenants --weir target/release/weir "$@"
