#!/usr/bin/env bash
# The whole test suite: installs and starts the local stack if needed, then formatting,
# lints, unit tests and the end-to-end tests against the real stack.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

# Every test makes its own topics, and the broker's store never shrinks: a suite run
# starts on an empty broker store once the store has grown past 1.5 GB (a few suite runs).
bash scripts/stack.sh trim-broker "${WEIR_BROKER_STORE_MAX_MB:-1536}"
bash scripts/stack.sh start

log "lint: Dockerfile (hadolint), Kubernetes overlays (scripts/check-k8s.py), shell (bash -n)"
"$WEIR_VENV/bin/hadolint" docker/Dockerfile
# tests/e2e/manifests.rs runs this too, and shows broken copies fail; here it fails fast.
"$WEIR_PYTHON" scripts/check-k8s.py k8s/overlays/local k8s/overlays/production
for f in scripts/*.sh .ci/run; do bash -n "$f"; done
log "docs/capacity.md is what load/capacity.py makes of load/capacity.toml"
python3 load/capacity.py | diff -u docs/capacity.md - \
  || die "docs/capacity.md is stale: python3 load/capacity.py > docs/capacity.md"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
log "fuzz: every decoder of outside bytes, a short run each (scripts/fuzz.sh --seconds 600 for long runs)"
bash scripts/fuzz.sh --seconds "${WEIR_FUZZ_SECONDS:-20}"
log "cargo test (unit, integration and end-to-end; the container test builds the image with scripts/image.sh)"
# --no-fail-fast: one run reports every failing test binary, not only the first.
cargo test --workspace --locked --no-fail-fast
