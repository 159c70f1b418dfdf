#!/usr/bin/env bash
# `make demo`: makes a sparse image, copies it with a progress bar under a rate limit, and shows the result.
set -euo pipefail
cd "$(dirname "$0")/.."
RBDCP=${RBDCP:-target/release/rbdcp}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/rbdcp-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT

echo "== a 4 GiB sparse image holding 256 MiB in 64 scattered extents"
truncate -s 4G "$dir/src.img"
for i in $(seq 0 63); do
  dd if=/dev/urandom of="$dir/src.img" bs=1M count=4 seek=$((i * 61 % 4000)) conv=notrunc status=none
done
"$RBDCP" diff "$dir/src.img" | head -5
echo "   ... $("$RBDCP" diff "$dir/src.img" | tail -n +2 | wc -l) extents"

echo "== rbdcp copy --bps-limit 128M --verify (the bar shows when stderr is a terminal)"
"$RBDCP" copy "$dir/src.img" "$dir/dst.img" --bps-limit 128M --verify

echo "== the copy: same bytes, holes kept"
"$RBDCP" verify "$dir/src.img" "$dir/dst.img"
du -h --apparent-size "$dir/dst.img" | sed 's/^/   apparent size: /'
du -h "$dir/dst.img" | sed 's/^/   on disk:       /'

echo "== the same copy as JSON, for scripts"
"$RBDCP" copy "$dir/src.img" "$dir/dst.img" --overwrite --json
