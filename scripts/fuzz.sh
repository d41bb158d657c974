#!/usr/bin/env bash
# Fuzzes every decoder of outside bytes with libFuzzer (the targets are in fuzz/).
#
#   scripts/fuzz.sh                      every target for 20 s (what the test suite runs)
#   scripts/fuzz.sh --seconds 600        every target for 10 minutes
#   scripts/fuzz.sh --seconds 600 influx json_push
#
# Each target asserts no panic and, where an encoder exists, round-trip equality; every
# run is bounded in memory (-malloc_limit_mb / -rss_limit_mb), so an input that makes a
# decoder allocate past it is a finding too. The corpus grows in the cache, outside the
# repository; inputs that once failed are kept in fuzz/regressions/<target>/ and replayed
# on every run. A finding is left in the cache's artifacts folder, named in the output:
# fix it, then copy the input to fuzz/regressions/<target>/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

seconds=20
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^weir-fuzz$')
fi

FUZZ_ROOT="$WEIR_CACHE_DIR/cargo-fuzz"
if [ ! -x "$FUZZ_ROOT/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz (once) into $FUZZ_ROOT"
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$FUZZ_ROOT" -q
fi
export PATH="$FUZZ_ROOT/bin:$PATH"
# cargo fuzz needs nightly compiler flags (sanitizers); the stable toolchain takes them
# when told it is bootstrapping itself.
export RUSTC_BOOTSTRAP=1
export LSAN_OPTIONS="suppressions=$WEIR_ROOT/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# A long run beside the test suite can take a target directory of its own.
export CARGO_TARGET_DIR="${WEIR_FUZZ_TARGET_DIR:-$WEIR_CACHE_DIR/fuzz-target}"

log "building ${#targets[@]} fuzz targets"
(cd fuzz && cargo fuzz build --release --debug-assertions) >&2

failed=()
for t in "${targets[@]}"; do
  corpus="$WEIR_CACHE_DIR/fuzz-corpus/$t"
  artifacts="$WEIR_CACHE_DIR/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$t"
  log "fuzz $t for ${seconds}s"
  if ! (cd fuzz && cargo fuzz run --release --debug-assertions "$t" "$corpus" "regressions/$t" -- \
        -max_total_time="$seconds" -malloc_limit_mb=512 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 | tail -n 25 >&2); then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  die "fuzz targets failed: ${failed[*]} (inputs in $WEIR_CACHE_DIR/fuzz-artifacts/<target>/)"
fi
log "fuzzed ${#targets[@]} targets for ${seconds}s each: no finding"
