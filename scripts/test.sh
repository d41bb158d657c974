#!/usr/bin/env bash
# The whole test suite: installs and starts the local stack if needed, then formatting,
# lints, unit tests and the end-to-end tests against the real stack.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

bash scripts/stack.sh start

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
log "cargo test (unit, integration and end-to-end)"
cargo test --workspace --locked
