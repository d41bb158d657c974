#!/usr/bin/env bash
# Scrape benchmark, one command: builds release binaries, starts the local stack and
# measures samples scraped per CPU-second by `weir scrape` (into Kafka) against vmagent
# (into a VictoriaMetrics of its own), both scraping the same 1,000 targets of 1,000
# series served on loopback, at the same time.
#   load/bench-scrape.sh [--runs 3] [--targets N --series S --interval 10s --window 60s]
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start
cargo build --release -q -p weir -p weir-load
exec target/release/weir-load bench-scrape --weir target/release/weir "$@"
