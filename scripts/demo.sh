#!/usr/bin/env bash
# The quick start: installs and starts the local stack, builds weir, creates the topics,
# runs the pipeline (gateway, tsdb-writer, rollup, alerter, and scrape pulling the local
# stack's own /metrics and a node_exporter, per scrape/local.yml) and pushes a simulated fleet
# of devices through it — one device overheats for a minute, one goes silent — then
# prints what flowed and the alerts it raised. Services keep running afterwards; `scripts/stack.sh stop`
# ends them.
#
#   scripts/demo.sh                 # 150 s of a 300-device fleet (long enough for the
#                                   # first 1-minute rollups to close and for the demo
#                                   # alerts of rules/fleet.rules.yml to fire and resolve)
#   DEMO_DURATION=2m DEMO_DEVICES=2000 scripts/demo.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

DEMO_DURATION="${DEMO_DURATION:-150s}"
DEMO_DEVICES="${DEMO_DEVICES:-300}"
PIDS="$WEIR_STATE_DIR/pids"
LOGS="$WEIR_STATE_DIR/logs"

bash scripts/stack.sh start

log "building weir (release; about 8 minutes on 2 cores the first time, seconds afterwards)"
cargo build --release -q -p weir -p weir-load
WEIR="$WEIR_ROOT/target/release/weir"
LOAD="$WEIR_ROOT/target/release/weir-load"

log "creating topics from the embedded topologies/local.yaml"
"$WEIR" topics apply

# start_service NAME READY_URL ARGS... : runs `weir ARGS` in the background, once.
start_service() {
  local name="$1" ready="$2"; shift 2
  mkdir -p "$PIDS" "$LOGS"
  if [ -f "$PIDS/$name.pid" ] && kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null; then
    # A binary rebuilt since it started is restarted so the demo runs the current code.
    local pid; pid="$(cat "$PIDS/$name.pid")"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  nohup "$WEIR" --log-format json "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  wait_for 60 "$name" http_ok "$ready" || die "$name did not become ready; see $LOGS/$name.log"
}

start_service weir-gateway "$GATEWAY_URL/readyz" gateway
start_service weir-tsdb-writer "$WRITER_URL/readyz" tsdb-writer
start_service weir-rollup "$ROLLUP_URL/readyz" rollup
# Rules from rules/fleet.rules.yml (the embedded topology names it, relative to here).
start_service weir-alerter "$ALERTER_URL/readyz" alerter
# Pull collection: scrape/local.yml (Prometheus' format) names the stack's servers.
start_service weir-scrape "$SCRAPE_URL/readyz" scrape

log "pushing a fleet of $DEMO_DEVICES devices for $DEMO_DURATION (JSON, Influx line protocol, remote write)"
# dev-00003 runs hot from +10s for 60s (DeviceOverheating fires, then resolves);
# dev-00007 stops reporting at +10s (DeviceSilent fires).
FLEET_STARTED_MS="$(python3 -c 'import time; print(int(time.time() * 1000))')"
"$LOAD" fleet --gateway "$GATEWAY_URL" --devices "$DEMO_DEVICES" --duration "$DEMO_DURATION" \
  --overheat dev-00003 --silent dev-00007 | tee "$LOGS/demo-fleet.out"
# What the gateway acknowledged: the demo waits until VictoriaMetrics holds exactly that.
PUSHED="$(sed -n 's/^samples accepted by the gateway: \([0-9]*\).*/\1/p' "$LOGS/demo-fleet.out")"

echo
log "what flowed"
echo "-- gateway counters ($GATEWAY_URL/metrics)"
curl -fsS "$GATEWAY_URL/metrics" | grep -E '^weir_gateway_(samples_total|records_total|requests_total)' | sort
echo "-- tsdb-writer counters ($WRITER_URL/metrics)"
curl -fsS "$WRITER_URL/metrics" | grep -E '^weir_(tsdb_writer_samples_total|tsdb_writer_requests_total|consumer_lag)' | sort
echo "-- rollup counters ($ROLLUP_URL/metrics)"
curl -fsS "$ROLLUP_URL/metrics" | grep -E '^weir_rollup_(samples_total|rows_total|watermark_seconds)' | sort
echo "-- alerter counters ($ALERTER_URL/metrics)"
curl -fsS "$ALERTER_URL/metrics" | grep -E '^weir_alerter_(samples_total|steps_total|events_total|notifications_total)' | sort
echo "-- scrape: targets ($SCRAPE_URL/api/v1/targets) and what they gave"
curl -fsS "$SCRAPE_URL/api/v1/targets" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("%-16s %-34s %-7s %s" % (t["scrapePool"], t["scrapeUrl"], t["health"], t["lastError"]))'
curl -fsS "$VM_URL/internal/force_flush" >/dev/null
echo "-- VictoriaMetrics: scraped series per job (through weir scrape -> metrics.raw -> tsdb-writer)"
curl -fsS "$VM_URL/api/v1/query" --data-urlencode 'query=sort_desc(sum by (job) (scrape_samples_post_metric_relabeling))'
echo
echo "-- Kafka topics (records per partition)"
"$WEIR" topics describe | grep -E '^(metrics\.(raw|dlq|late|rollup)|alerts\.)'
echo "-- one decoded record of metrics.raw, as JSON (weir tail)"
"$WEIR" tail --from-beginning --max-records 1 | cut -c1-600
# The writer's lag never settles at zero here (the stack's Prometheus keeps
# remote-writing through the gateway), so wait for the fleet's own samples instead: those
# VictoriaMetrics holds since the fleet started, against what the gateway accepted.
fleet_in_vm() {
  local secs=$(( $(date +%s) - FLEET_STARTED_MS / 1000 + 5 ))
  curl -fsS "$VM_URL/internal/force_flush" >/dev/null
  local n
  n="$(curl -fsS "$VM_URL/api/v1/query" --data-urlencode \
    "query=sum(count_over_time({__name__=~\"temperature_celsius|cpu_usage_ratio|packets_sent_total|uptime_seconds\"}[${secs}s]))" |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')"
  [ "${n:-0}" -ge "${PUSHED:-1}" ]
}
wait_for 120 "the fleet's ${PUSHED:-?} samples in VictoriaMetrics" fleet_in_vm ||
  log "VictoriaMetrics does not hold all ${PUSHED:-?} samples the gateway accepted yet; numbers below may be short"
curl -fsS "$VM_URL/internal/force_flush" >/dev/null
echo "-- VictoriaMetrics: devices reporting, by site"
curl -fsS "$VM_URL/api/v1/query" --data-urlencode 'query=count by (site) (temperature_celsius)'
echo
echo "-- VictoriaMetrics: raw samples of one device (export)"
curl -fsS "$VM_URL/api/v1/export" --data-urlencode 'match[]=temperature_celsius{device="dev-00007"}'
echo
echo "-- ClickHouse: 1-minute rollups of the fleet's temperatures, by minute (FINAL: one row per series and window)"
curl -fsS "$CH_URL/" --data-binary "SELECT window_start, count() AS series, sum(count) AS samples, round(sum(sum) / sum(count), 2) AS avg, round(max(max), 2) AS max, round(max(p99), 2) AS p99_max FROM weir.rollup_1m FINAL WHERE metric = 'temperature_celsius' GROUP BY window_start ORDER BY window_start FORMAT PrettyCompactMonoBlock"
echo "-- ClickHouse: one device's 1-minute rows"
curl -fsS "$CH_URL/" --data-binary "SELECT series, window_start, count, min, max, first, last, p50, p99 FROM weir.rollup_1m FINAL WHERE series LIKE 'temperature_celsius{%device=\"dev-00007\"%' ORDER BY window_start FORMAT PrettyCompactMonoBlock"
# alert_events: this run's events on alerts.triggered, one line each.
alert_events() {
  "$WEIR" tail --topic alerts.triggered --from-beginning --idle-timeout 3s |
    python3 -c '
import json, sys, datetime
since = int(sys.argv[1])
t = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%H:%M:%S")
for line in sys.stdin:
    a = json.loads(line).get("alert")
    if not a or a["starts_at"] < since:
        continue
    ends = " ended " + t(a["ends_at"]) if a["ends_at"] else ""
    print("%-9s %-18s %-10s started %s%s  %s" % (a["status"], a["alertname"], a["labels"].get("device", ""),
          t(a["starts_at"]), ends, a["annotations"].get("description", "")))
' "$FLEET_STARTED_MS"
}
# Steps are evaluated once the watermark (newest sample - 10s) passes them.
silent_fired() { alert_events | grep -q 'firing *DeviceSilent'; }
wait_for 60 "the demo alerts" silent_fired ||
  log "DeviceSilent has not fired yet; the list below may be short"
echo "-- alerts.triggered: this run's alert events ($WEIR tail --topic alerts.triggered)"
alert_events
# Replay, one recipe of README's "Replay and backfill": the same rules backtested over
# this run's samples, read again from metrics.raw; the alerts match the live ones above.
FLEET_FROM="$(python3 -c 'import sys, datetime; print(datetime.datetime.fromtimestamp(int(sys.argv[1]) // 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))' "$FLEET_STARTED_MS")"
echo "-- backtest: rules/fleet.rules.yml over this run's samples ($WEIR replay --into alerter --from $FLEET_FROM)"
"$WEIR" replay --into alerter --rules rules/fleet.rules.yml --from "$FLEET_FROM" --to now 2>/dev/null |
  python3 -c '
import json, sys, datetime
t = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%H:%M:%S")
for line in sys.stdin:
    a = json.loads(line)
    ends = " ended " + t(a["ends_at_ms"]) if a["ends_at_ms"] else ""
    print("%-9s %-18s %-10s started %s%s" % (a["status"], a["alertname"], a["labels"].get("device", ""), t(a["starts_at_ms"]), ends))
' || log "the backtest failed; run it by hand to see why"
echo "-- Alertmanager: active alerts ($AM_URL/api/v2/alerts)"
curl -fsS "$AM_URL/api/v2/alerts?active=true" |
  python3 -c 'import json, sys; [print(a["labels"]["alertname"], a["labels"].get("device", ""), a["status"]["state"], "since", a["startsAt"]) for a in json.load(sys.stdin)]'
cat <<MSG
The pipeline keeps running on loopback:
  gateway        $GATEWAY_URL   (POST /api/v1/write, /write, /api/v2/write, /api/v1/push; GET /metrics)
  Kafka (tansu)  $KAFKA_ADDR    ($WEIR tail --from-beginning | head)
  tsdb-writer    $WRITER_URL   (metrics.raw -> VictoriaMetrics; GET /metrics)
  rollup         $ROLLUP_URL   (metrics.raw -> 1m/5m/1h in ClickHouse weir.rollup_* and metrics.rollup.*)
  alerter        $ALERTER_URL   (rules/fleet.rules.yml on event time -> alerts.triggered and Alertmanager)
  scrape         $SCRAPE_URL   (scrape/local.yml -> metrics.raw; GET /api/v1/targets; kill -HUP reloads)
  Alertmanager   $AM_URL   (curl -s $AM_URL/api/v2/alerts; events: $WEIR tail --topic alerts.triggered --from-beginning)
  ClickHouse     $CH_URL   (echo 'SELECT * FROM weir.rollup_1m FINAL LIMIT 5' | curl -s $CH_URL/ --data-binary @-)
  VictoriaMetrics $VM_URL  (curl '$VM_URL/api/v1/query?query=temperature_celsius')
  Prometheus     $PROM_URL      (scrapes weir's services and remote-writes through the gateway)
  logs           $LOGS
Stop everything with: scripts/stack.sh stop
MSG
