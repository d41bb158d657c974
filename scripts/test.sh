#!/usr/bin/env bash
# The whole test suite: installs and starts the local stack if needed, then formatting,
# lints, unit tests and the end-to-end tests against the real stack.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

bash scripts/stack.sh start

log "lint: Dockerfile (hadolint), Kubernetes manifests (kubernetes-validate), shell (bash -n)"
"$WEIR_VENV/bin/hadolint" docker/Dockerfile
"$WEIR_VENV/bin/kubernetes-validate" --strict k8s/*.yaml
for f in scripts/*.sh .ci/run; do bash -n "$f"; done

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
log "fuzz: every decoder of outside bytes, a short run each (scripts/fuzz.sh --seconds 600 for long runs)"
bash scripts/fuzz.sh --seconds "${WEIR_FUZZ_SECONDS:-20}"
log "cargo test (unit, integration and end-to-end)"
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --workspace --locked --no-fail-fast
