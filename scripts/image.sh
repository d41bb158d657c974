#!/usr/bin/env bash
# Builds the weir image (one image, every role) from docker/Dockerfile.
#
#   scripts/image.sh            # -> weir:latest
#   WEIR_IMAGE=weir:dev scripts/image.sh
#
# The release binary is built on the host (cargo's cache makes a second build quick)
# and handed to the Dockerfile's `build` stage as a build context, so nothing compiles
# twice; `docker build -f docker/Dockerfile .` without it compiles inside the build
# stage instead. With a Docker engine running it uses docker, otherwise podman (from
# Debian, installed on first use). No registry needs to be reachable: the Debian base
# image is made locally with mmdebstrap on first use and cached.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$WEIR_ROOT"

IMAGE="${WEIR_IMAGE:-weir:latest}"
BASE_IMAGE="docker.io/library/debian:bookworm-slim"
BASE_TAR="$WEIR_CACHE_DIR/images/debian-bookworm-minbase.tar"
# The Debian mirror apt uses here; the base image's apt uses it too.
DEBIAN_MIRROR="${WEIR_DEBIAN_MIRROR:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

engine="$(container_engine)"
log "container engine: $engine"

if ! "$engine" image exists "$BASE_IMAGE" 2>/dev/null && ! "$engine" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ ! -s "$BASE_TAR" ]; then
    command -v mmdebstrap >/dev/null || install_debian_packages mmdebstrap
    log "making the base image $BASE_IMAGE with mmdebstrap from $DEBIAN_MIRROR (about 1.5 minutes, once)"
    mkdir -p "$(dirname "$BASE_TAR")"
    # mmdebstrap picks the output format from the name: write *.tar, then rename, so an
    # interrupted run leaves no tarball that looks complete.
    # Like Debian's own slim images: no documentation, manuals or locales, no apt lists.
    as_root mmdebstrap --quiet --variant=minbase \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
      bookworm "$BASE_TAR.part.tar" "$DEBIAN_MIRROR"
    mv "$BASE_TAR.part.tar" "$BASE_TAR"
  fi
  log "importing the cached base image ($BASE_TAR)"
  "$engine" import -q "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

log "building weir (release) on the host"
cargo build --release --locked -q -p weir
stage="$WEIR_CACHE_DIR/image-build"
rm -rf "$stage" && mkdir -p "$stage/out"
cp target/release/weir "$stage/out/weir"
strip "$stage/out/weir"

log "building the image $IMAGE from docker/Dockerfile"
if [ "$engine" = podman ]; then
  # --format docker keeps HEALTHCHECK (OCI images have no such field).
  podman build -q --format docker --network host --pull=never \
    --build-context build="$stage" -f docker/Dockerfile -t "$IMAGE" . >/dev/null
else
  docker build -q --network host --build-context build="$stage" \
    -f docker/Dockerfile -t "$IMAGE" . >/dev/null
fi
log "built $IMAGE: $("$engine" image inspect --format '{{.Id}} {{.Size}} bytes' "$IMAGE" | cut -c1-12,65-)"
