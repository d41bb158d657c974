#!/usr/bin/env bash
# Hostile bodies against the gateway, one command: starts the release `weir gateway` on
# the local stack (default limits), sends each body shape of the hardening tests once and
# an ordinary body of the same size, and prints per request the answer, the gateway's
# CPU time for it and its peak RSS so far (VmHWM from /proc).
#   load/bench-hostile.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$WEIR_ROOT"
bash scripts/stack.sh start >/dev/null
cargo build --release -q -p weir
work="$(mktemp -d)"
trap 'kill "$gw" 2>/dev/null; rm -rf "$work"' EXIT

topic="bench.hostile.$$"
cat >"$work/topology.yaml" <<YAML
version: 1
kafka: {bootstrap_servers: '$KAFKA_ADDR'}
topics:
  $topic: {partitions: 8, compression: lz4}
gateway: {listen: '127.0.0.1:18080', topic: $topic}
YAML
target/release/weir topics apply -f "$work/topology.yaml" >/dev/null
target/release/weir gateway -f "$work/topology.yaml" 2>"$work/gateway.log" &
gw=$!
wait_for 30 "gateway" http_ok http://127.0.0.1:18080/readyz || die "gateway not ready; see $work/gateway.log"

"$WEIR_PYTHON" - "$work" <<'PY'
import sys, time
w = sys.argv[1]
now = int(time.time() * 1000)
def write(name, data):
    open(f"{w}/{name}", "wb").write(data.encode())
fields = ",".join(f"f{i}=1" for i in range(20000))
write("influx-huge-tag", f"m,host={'x' * 65536} {fields}")
tags = ",".join(f"t{i:02}={'v' * 2000}" for i in range(29))
f1000 = ",".join(f"f{i}=1" for i in range(1000))
write("influx-max-labels", f"m,{tags} {f1000}\n" * 40)
labels = ",".join(f'"l{i:02}":"{"v" * 2000}"' for i in range(30))
metrics = ",".join(f'{{"name":"m{i}","value":1}}' for i in range(20000))
write("json-shared-labels", f'{{"labels":{{{labels}}},"metrics":[{metrics}]}}')
# Ordinary bodies of the same sizes: a fleet's lines as Telegraf batches them, ten
# scrapes of each host in a row, two fields a line.
for name, size in [("ordinary-234k", 234 * 1024), ("ordinary-2600k", 2600 * 1024)]:
    out, i = [], 0
    total = 0
    while total < size:
        t = (now - (9 - i % 10) * 10_000) * 1_000_000
        line = f"cpu,host=h{i // 10},region=eu usage={i}.5,idle=3 {t}\n"
        out.append(line); total += len(line); i += 1
    write(name, "".join(out))
PY

cpu() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
hwm() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$gw/status"; }
printf '%-22s %10s %6s %12s %14s\n' body bytes status "CPU ms" "peak RSS MiB"
for body in influx-huge-tag influx-max-labels ordinary-2600k json-shared-labels ordinary-234k; do
  path=/write; ct=text/plain
  case "$body" in json-*) path=/api/v1/push; ct=application/json ;; esac
  before=$(cpu)
  status=$(curl -s -o "$work/answer" -w '%{http_code}' -H "Content-Type: $ct" --data-binary "@$work/$body" "http://127.0.0.1:18080$path")
  after=$(cpu)
  printf '%-22s %10s %6s %12s %14s  %s\n' "$body" "$(stat -c %s "$work/$body")" "$status" "$(( (after - before) * 10 ))" "$(hwm)" "$(head -c 150 "$work/answer")"
done
echo "CPU from /proc/PID/stat utime+stime (10 ms ticks) around each request; peak RSS is VmHWM, the whole process's high-water mark since start."
