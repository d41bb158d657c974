#!/usr/bin/env bash
# The local stack on loopback: tansu (Kafka protocol, sqlite storage), VictoriaMetrics,
# ClickHouse, Alertmanager, Prometheus and a node_exporter.
#
#   scripts/stack.sh install   install what is missing (Debian packages, tansu, Python venv)
#   scripts/stack.sh start     install if needed, start what is not running, wait until healthy
#   scripts/stack.sh stop      stop what this script (or the demo) started, nothing else
#   scripts/stack.sh kill NAME SIGKILL one server (fault tests); `start` brings it back
#   scripts/stack.sh status    show what runs
#   scripts/stack.sh reset     stop, then delete the stack's data (topics, series, tables,
#                              alerts) but not what is installed; `start` begins empty
#   scripts/stack.sh trim-broker MAX_MB  empty the broker's store if it is over MAX_MB
#   scripts/stack.sh env       print the settings as shell variables
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PIDS="$WEIR_STATE_DIR/pids"
LOGS="$WEIR_STATE_DIR/logs"

install_debian() {
  local missing=()
  for bin in victoria-metrics clickhouse-server prometheus-alertmanager prometheus promtool prometheus-node-exporter curl stunnel4 openssl; do
    command -v "$bin" >/dev/null || missing+=("$bin")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages (missing: ${missing[*]}; about 1 minute)"
  install_debian_packages "${DEB_PACKAGES[@]}"
}

install_tansu() {
  [ -x "$TANSU_BIN" ] && return 0
  local started; started=$(date +%s)
  log "building the tansu $TANSU_VERSION broker with its sqlite (libsql) storage from crates.io (scripts/broker); about 12 minutes on 2 cores, once"
  local target="$WEIR_CACHE_DIR/build/broker"
  cargo install --quiet --locked --path scripts/broker --root "$(dirname "$(dirname "$TANSU_BIN")")" \
    --target-dir "$target"
  # The build tree (1.5 GB here) is never reused once the binary is installed.
  rm -rf "$target"
  log "tansu broker built in $(( $(date +%s) - started )) s: $TANSU_BIN"
}

install_python() {
  if [ -x "$WEIR_PYTHON" ] && [ -x "$WEIR_VENV/bin/hadolint" ] \
    && "$WEIR_PYTHON" -c 'import confluent_kafka, fastavro, snappy, kubernetes_validate, podman_compose, cloudcoil.models.keda, yaml, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc, grpc_tools.protoc' 2>/dev/null; then
    return 0
  fi
  log "creating the Python venv (producer example, independent decoder, manifest linters, podman-compose; about 1 minute)"
  [ -x "$WEIR_PYTHON" ] || python3 -m venv "$WEIR_VENV"
  "$WEIR_VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
}

cmd_install() {
  mkdir -p "$WEIR_CACHE_DIR"
  install_debian
  install_tansu
  install_python
}

# running NAME -> true when NAME's pidfile names a live process
running() {
  local f="$PIDS/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# spawn NAME CMD... -> starts CMD in the background, logs and pid in the state dir
spawn() {
  local name="$1"; shift
  mkdir -p "$PIDS" "$LOGS"
  nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

# ensure NAME START_FUNCTION HEALTHCHECK ARGS... (the last argument: its address or URL)
ensure() {
  local name="$1" start="$2"; shift 2
  if running "$name"; then
    if wait_for 30 "$name" "$@"; then return 0; fi
    # A server that runs but does not answer is restarted, so one wedged server does not
    # fail every later test binary: tansu 0.6's storage task can panic while its listener
    # lives on (seen on a sqlite store of several GB), and it recovers from its store.
    log "$name runs (pid $(cat "$PIDS/$name.pid")) but has not been healthy for 30 s; restarting it (its log: $LOGS/$name.log)"
    kill_server "$name"
  fi
  # Anything on the port, healthy or not (a stuck broker whose pid file is gone), was
  # not started by this script. The health check's last argument names the port.
  local target="${*: -1}"; target="${target#*://}"
  if tcp_open "${target%%/*}"; then
    die "$name: its port is already served by a process this script did not start; stop it first"
  fi
  "$start"
  wait_for 60 "$name" "$@" || die "$name did not become healthy in 60s; see $LOGS/$name.log"
}

start_tansu() {
  mkdir -p "$WEIR_STATE_DIR/tansu"
  # The default listener is 0.0.0.0: always bind loopback. tansu reads the sqlite URL's
  # path as relative, so it runs in its data directory.
  spawn tansu sh -c "cd '$WEIR_STATE_DIR/tansu' && exec '$TANSU_BIN' broker \
    --listener-url tcp://$KAFKA_ADDR --advertised-listener-url tcp://$KAFKA_ADDR \
    --storage-engine sqlite://tansu.db"
}

start_vm() {
  spawn victoria-metrics victoria-metrics -httpListenAddr=127.0.0.1:8428 \
    -storageDataPath="$WEIR_STATE_DIR/victoria-metrics" -retentionPeriod=100y \
    -dedup.minScrapeInterval=1ms -search.latencyOffset=0s
}

start_clickhouse() {
  local dir="$WEIR_STATE_DIR/clickhouse"
  mkdir -p "$dir/etc" "$dir/data" "$LOGS/clickhouse"
  sed -e "s#/var/lib/clickhouse/#$dir/data/#g" \
      -e "s#/var/log/clickhouse-server/#$LOGS/clickhouse/#g" \
      -e '/<listen_host>::1<\/listen_host>/d' \
      -e 's#<interserver_http_port>9009</interserver_http_port>#<interserver_http_port>9009</interserver_http_port><interserver_http_host>127.0.0.1</interserver_http_host>#' \
      /etc/clickhouse-server/config.xml >"$dir/etc/config.xml"
  # Beside the passwordless `default`: a user with a password, so the ClickHouse sink's
  # credentials are tested against the server (tests/e2e/sink_tls.rs). Loopback only.
  sed -e 's#</users>#<weir_auth_test><password_sha256_hex>e21fcc731caf68ed0ba2c1b3de7650e67805914cf156c871e974d1c78c01af3a</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></weir_auth_test></users>#' \
      /etc/clickhouse-server/users.xml >"$dir/etc/users.xml"
  spawn clickhouse clickhouse-server --config-file="$dir/etc/config.xml"
}

start_alertmanager() {
  local dir="$WEIR_STATE_DIR/alertmanager"
  mkdir -p "$dir"
  # Alerts are routed nowhere locally: Alertmanager's API is what the pipeline and the
  # tests look at. An empty cluster address keeps it off 0.0.0.0:9094.
  cat >"$dir/alertmanager.yml" <<'YAML'
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: "null"
YAML
  spawn alertmanager prometheus-alertmanager --config.file="$dir/alertmanager.yml" \
    --storage.path="$dir/data" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
}

start_prometheus() {
  local dir="$WEIR_STATE_DIR/prometheus"
  mkdir -p "$dir"
  # Prometheus scrapes weir's services and itself, and remote-writes what it scrapes
  # through the gateway into metrics.raw: the same path any Prometheus user takes.
  cat >"$dir/prometheus.yml" <<'YAML'
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:9090"]}]
  - job_name: weir
    static_configs:
      - targets: ["127.0.0.1:8080"]
        labels: {role: gateway}
      - targets: ["127.0.0.1:9301"]
        labels: {role: tsdb-writer}
      - targets: ["127.0.0.1:9302"]
        labels: {role: rollup}
      - targets: ["127.0.0.1:9303"]
        labels: {role: alerter}
remote_write:
  - url: http://127.0.0.1:8080/api/v1/write
    queue_config: {batch_send_deadline: 2s, min_backoff: 500ms, max_backoff: 5s}
YAML
  spawn prometheus prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle
}

# node_exporter: a real host's metrics for `weir scrape` in the demo (the tests start
# their own). Only collectors that read /proc and /sys of this machine.
start_node_exporter() {
  spawn node-exporter prometheus-node-exporter --web.listen-address=127.0.0.1:9100
}

cmd_start() {
  cmd_install
  ensure tansu start_tansu kafka_metadata_ok "$KAFKA_ADDR"
  ensure victoria-metrics start_vm http_ok "$VM_URL/health"
  ensure clickhouse start_clickhouse http_ok "$CH_URL/ping"
  ensure alertmanager start_alertmanager http_ok "$AM_URL/-/ready"
  ensure prometheus start_prometheus http_ok "$PROM_URL/-/ready"
  ensure node-exporter start_node_exporter http_ok "http://127.0.0.1:9100/metrics"
  log "stack is up; state, data and logs in $WEIR_STATE_DIR"
}

cmd_stop() {
  [ -d "$PIDS" ] || { log "nothing to stop"; return 0; }
  local f name pid
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
  done
}

# tansu keeps every topic in one sqlite file that never shrinks; after many benchmark
# runs (gigabytes) it slows down and its storage task has been seen to die. Deleting
# topics is no way out: tansu 0.6 deletes every topic on any DeleteTopics request.
cmd_reset() {
  cmd_stop
  local d
  for d in tansu victoria-metrics clickhouse alertmanager prometheus; do
    rm -rf "${WEIR_STATE_DIR:?}/$d"
  done
  log "stack data deleted; scripts/stack.sh start begins with empty stores"
}

# kill_server NAME -> SIGKILL a server this script started and wait until it is gone.
kill_server() {
  local pid; pid="$(cat "$PIDS/$1.pid")"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$PIDS/$1.pid"
  log "killed $1 (pid $pid)"
}

# SIGKILL one server of the stack (the fault tests' crash); `start` brings it back.
cmd_kill() {
  local name="${1:?usage: stack.sh kill tansu|victoria-metrics|clickhouse|alertmanager|prometheus}"
  running "$name" || die "$name is not running"
  kill_server "$name"
}

# The broker's store only grows (see cmd_reset); past a few GB tansu 0.6 slows down until
# producers time out, and its storage task has panicked there. `trim-broker MAX_MB` starts
# the broker over on an empty store when it is larger than that; everything else is kept.
cmd_trim_broker() {
  local max_mb="${1:?usage: stack.sh trim-broker MAX_MB}"
  local db="$WEIR_STATE_DIR/tansu/tansu.db" size_mb
  [ -f "$db" ] || return 0
  size_mb=$(( $(stat -c %s "$db") / 1048576 ))
  [ "$size_mb" -gt "$max_mb" ] || return 0
  log "the broker's store is $size_mb MB (over $max_mb MB): starting the broker on an empty store; its topics are created again by whoever uses them"
  if running tansu; then kill_server tansu; fi
  rm -rf "${WEIR_STATE_DIR:?}/tansu"
}

cmd_status() {
  local f name
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || { echo "nothing runs"; return 0; }
    name="$(basename "$f" .pid)"
    if ! running "$name"; then echo "dead     $name"
    elif [ "$name" = tansu ] && ! kafka_metadata_ok "$KAFKA_ADDR"; then
      echo "stuck    $name (pid $(cat "$f")): no metadata answer in 3 s; scripts/stack.sh reset"
    else echo "running  $name (pid $(cat "$f"))"; fi
  done
}

cmd_env() {
  cat <<ENV
WEIR_CACHE_DIR=$WEIR_CACHE_DIR
WEIR_STATE_DIR=$WEIR_STATE_DIR
WEIR_PYTHON=$WEIR_PYTHON
TANSU_BIN=$TANSU_BIN
KAFKA_ADDR=$KAFKA_ADDR
ENV
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill "${2:-}" ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  trim-broker) cmd_trim_broker "${2:-}" ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|start|stop|kill NAME|status|reset|trim-broker MAX_MB|env" >&2; exit 2 ;;
esac
