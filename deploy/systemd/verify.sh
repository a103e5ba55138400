#!/usr/bin/env bash
# Verifies the systemd unit with systemd-analyze verify (Debian: apt-get install -y systemd),
# with its /usr/local/bin/woorelay replaced by the binary given, and runs the unit's
# ExecStartPre (woorelay config check) on the example sources file.
#
#   deploy/systemd/verify.sh PATH/TO/woorelay
set -euo pipefail
bin=$(realpath "${1:?usage: deploy/systemd/verify.sh PATH/TO/woorelay}")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/woorelay#$bin#g; s#/etc/woorelay/woorelay.yaml#$here/woorelay.yaml#g" \
  "$here/woorelay.service" > "$tmp/woorelay.service"
systemd-analyze verify --man=no "$tmp/woorelay.service"
pre=$(sed -n 's/^ExecStartPre=//p' "$tmp/woorelay.service")
WOORELAY_WRITE_KEY_WEBSITE=k1 $pre
echo "verify.sh: woorelay.service verified; its ExecStartPre passes on woorelay.yaml"
