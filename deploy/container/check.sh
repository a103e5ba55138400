#!/usr/bin/env bash
# Checks a woorelay image built by build.sh: its configuration (non-root numeric user, ports,
# volume, OCI labels, a health check that needs no shell), then runs the binary from the
# image's exported file system with chroot, as the image's user and with the image's
# environment: serve starts, `woorelay health` reports it ready, an event is accepted, and
# SIGTERM stops it cleanly. (chroot rather than `podman run`: containers cannot start in a
# sandbox without CAP_SYS_RESOURCE, where the OCI runtime's setrlimit is refused.)
#
#   deploy/container/check.sh TAG
set -euo pipefail
tag=${1:?usage: deploy/container/check.sh TAG}
read -ra engine <<< "${CONTAINER_ENGINE:-podman}" # a command and its global flags
fail() { echo "check.sh: $*" >&2; exit 1; }

inspect() { "${engine[@]}" image inspect "$tag" --format "$1"; }
[ "$(inspect '{{.Config.User}}')" = "65532:65532" ] || fail "the image's user is '$(inspect '{{.Config.User}}')', want 65532:65532"
ports=$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')
for p in 8080/tcp 9090/tcp; do [[ " $ports" == *" $p "* ]] || fail "port $p is not exposed (exposed: $ports)"; done
[[ "$(inspect '{{range $v, $_ := .Config.Volumes}}{{$v}} {{end}}')" == *"/var/lib/woorelay "* ]] || fail "/var/lib/woorelay is not a volume"
for l in title description source version revision created; do
  [ -n "$(inspect "{{index .Config.Labels \"org.opencontainers.image.$l\"}}")" ] || fail "no label org.opencontainers.image.$l"
done
[ "$(inspect '{{json .HealthCheck.Test}}')" = '["CMD","/usr/local/bin/woorelay","health"]' ] || fail "the health check is $(inspect '{{json .HealthCheck.Test}}'), want woorelay health without a shell"

root=$(mktemp -d)
chmod 0755 "$root" # the image's user must reach its files
ctr=$("${engine[@]}" create "$tag")
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  mountpoint -q "$root/proc" && umount "$root/proc" || true
  "${engine[@]}" rm -f "$ctr" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT
"${engine[@]}" export "$ctr" | tar -x -C "$root"
[ ! -e "$root/bin/sh" ] || fail "the image has a shell; it should hold the binary alone"
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle in the image"
[ "$(stat -c %u "$root/var/lib/woorelay")" = 65532 ] || fail "/var/lib/woorelay is not owned by the image's user"
mkdir -p "$root/proc"
mount -t proc proc "$root/proc" 2>/dev/null || mount --bind /proc "$root/proc" 2>/dev/null || echo "check.sh: /proc not mounted in the chroot; process metrics will be missing" >&2

# The image's environment, with the ports moved to free loopback ones.
mapfile -t env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | grep -v '^$')
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))
env+=("WOORELAY_LISTEN=127.0.0.1:$port" "WOORELAY_ADMIN_LISTEN=127.0.0.1:$admin")
in_image() { env -i "${env[@]}" chroot --userspec=65532:65532 "$root" /usr/local/bin/woorelay "$@"; }

if in_image health >/dev/null 2>&1; then fail "woorelay health says ready before serve started"; fi
log=$(mktemp)
env -i "${env[@]}" chroot --userspec=65532:65532 "$root" /usr/local/bin/woorelay serve >"$log" 2>&1 &
pid=$! # env and chroot exec: this is serve's pid
for _ in $(seq 1 150); do
  in_image health >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "serve exited at start"; }
  sleep 0.2
done
in_image health >/dev/null || { cat "$log" >&2; fail "woorelay health never reported serve ready"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -u any-key: -H 'Content-Type: application/json' \
  -d '{"type":"track","event":"Image Checked","userId":"u1","messageId":"m1"}' "http://127.0.0.1:$port/v1/track")
[ "$code" = 200 ] || { cat "$log" >&2; fail "ingest answered $code to an event"; }
curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^woorelay_ready 1' || fail "/metrics does not say woorelay_ready 1"
kill -TERM "$pid"
if ! wait "$pid"; then cat "$log" >&2; fail "serve did not exit 0 on SIGTERM"; fi
pid=
[ -n "$(ls -A "$root/var/lib/woorelay")" ] || fail "serve wrote nothing under /var/lib/woorelay"
echo "check.sh: $tag: user 65532, ports $ports, volume, labels, health check; served from its file system under chroot"
