#!/usr/bin/env bash
# `make demo`: two local Ceph clusters, an image with two snapshots, a full and an incremental
# cross-cluster copy with progress bars, a verification, and the tear-down.
set -euo pipefail
cd "$(dirname "$0")/.."
RBDCP=${RBDCP:-$PWD/target/release/rbdcp}

if [[ -z ${RBDCP_CONF1:-} ]]; then
  # Start two clusters, come back here, and stop them when this script ends.
  export RBDCP_CEPH_ROOT=${RBDCP_CEPH_ROOT:-/tmp/rbdcp-demo}
  export RBDCP_C1_PORT=${RBDCP_C1_PORT:-13700} RBDCP_C2_PORT=${RBDCP_C2_PORT:-13800}
  exec bash scripts/with-clusters.sh bash "$0"
fi
C1=$RBDCP_CONF1 C2=$RBDCP_CONF2
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
src() { echo "rbd:rbd/vm@$1:conf=$C1"; }
dst() { echo "rbd:rbd/vm$1:conf=$C2"; }

say "cluster 1: a 1 GiB image holding 192 MiB of data, snapshot s1"
work=$(mktemp -d /var/tmp/rbdcp-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
truncate -s 1G "$work/vm.img"
for i in $(seq 0 47); do
  dd if=/dev/urandom of="$work/vm.img" bs=1M count=4 seek=$((i * 21)) conv=notrunc status=none
done
rbd -c "$C1" import --no-progress "$work/vm.img" rbd/vm
rbd -c "$C1" snap create --no-progress rbd/vm@s1

say "rbdcp copy $(src s1) $(dst '') --bps-limit 256M"
"$RBDCP" copy "$(src s1)" "$(dst '')" --bps-limit 256M

say "cluster 1: 32 MiB of random 64 KiB writes, snapshot s2"
rbd -c "$C1" bench --io-type write --io-size 64K --io-total 32M --io-pattern rand rbd/vm >/dev/null
rbd -c "$C1" snap create --no-progress rbd/vm@s2
echo "rbdcp diff --from-snap s1 lists $("$RBDCP" diff "$(src s2)" --from-snap s1 | tail -n +2 | wc -l) changed extents"

say "rbdcp copy $(src s2) $(dst '') --from-snap s1 --verify --json"
"$RBDCP" copy "$(src s2)" "$(dst '')" --from-snap s1 --verify --json | python3 -m json.tool

say "cluster 2 now holds both snapshots, byte for byte as cluster 1"
rbd -c "$C2" snap ls rbd/vm
for s in s1 s2; do
  "$RBDCP" verify "$(src "$s")" "$(dst "@$s")"
done
