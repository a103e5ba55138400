#!/usr/bin/env bash
# Builds woorelay's container image offline: a static binary (CGO_ENABLED=0) first, then the
# image FROM scratch with podman (or docker: CONTAINER_ENGINE=docker).
#
#   deploy/container/build.sh TAG        e.g. deploy/container/build.sh woorelay:dev
#
# The CA bundle is the build machine's (CA_BUNDLE overrides /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: deploy/container/build.sh TAG   (e.g. woorelay:dev)" >&2
  exit 2
fi
tag=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
read -ra engine <<< "${CONTAINER_ENGINE:-podman}" # a command and its global flags
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if ! command -v "${engine[0]}" >/dev/null 2>&1; then
  echo "build.sh: ${engine[0]} is not installed (Debian: apt-get install -y podman; or set CONTAINER_ENGINE=docker)" >&2
  exit 1
fi
if [ ! -s "$ca" ]; then
  echo "build.sh: no CA bundle at $ca (Debian: apt-get install -y ca-certificates; or set CA_BUNDLE)" >&2
  exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)

(cd "$root" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o "$ctx/woorelay" ./cmd/woorelay)
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/data"
cp "$ca" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nwoorelay:x:65532:65532:woorelay:/var/lib/woorelay:/sbin/nologin\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nwoorelay:x:65532:\n' > "$ctx/rootfs/etc/group"
cp "$here/Containerfile" "$ctx/Containerfile"

# podman: --format docker keeps HEALTHCHECK (the OCI image format has no field for it);
# --no-cache, because its layer cache ignores the build arguments (the labels would go stale).
extra=()
if [ "${engine[0]}" = podman ]; then extra=(--format docker --pull=never --no-cache); fi
"${engine[@]}" build "${extra[@]}" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$tag" -f "$ctx/Containerfile" "$ctx"
