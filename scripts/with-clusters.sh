#!/usr/bin/env bash
# Runs a command with two fresh throw-away local Ceph clusters (c1, c2) and always tears them down afterwards.
#
# Usage: with-clusters.sh CMD [ARGS...]
#   Starts c1 (mon port ${RBDCP_C1_PORT:-13100}) and c2 (${RBDCP_C2_PORT:-13200}) in parallel with
#   ceph-local.sh, exports RBDCP_CONF1 and RBDCP_CONF2 (their ceph.conf paths; the keyrings, far.conf etc.
#   are next to them) and RBDCP_CLUSTERS=1, runs CMD, stops both clusters on exit, INT and TERM,
#   and exits with CMD's status. Clusters live in ${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}/{c1,c2}; leftovers
#   of an earlier run there are stopped first, so two concurrent runs need different RBDCP_CEPH_ROOTs
#   and ports.
# Example: scripts/with-clusters.sh cargo test -- --include-ignored
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL=$HERE/ceph-local.sh
ROOT=${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}
NAMES=(c1 c2)
PORTS=("${RBDCP_C1_PORT:-13100}" "${RBDCP_C2_PORT:-13200}")

if (($# == 0)); then
	sed -n '4,11s/^# \{0,1\}//p' "$0" >&2
	exit 2
fi

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

TMP=''
STARTERS=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$? pid n t
	trap - EXIT INT TERM
	trap '' INT TERM # finish the tear-down even if interrupted again
	# Start jobs still running (we were interrupted): let them kill their own daemons first.
	for pid in "${STARTERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${STARTERS[@]}"; do wait "$pid" 2>/dev/null || true; done
	t=$(now)
	local pids=()
	for n in "${NAMES[@]}"; do
		"$CL" stop "$n" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		if ! wait "$pid"; then
			echo "$PROG: stopping a cluster failed" >&2
			((rc != 0)) || rc=1
		fi
	done
	echo "$PROG: clusters stopped in $(since "$t") s" >&2
	[[ -z $TMP ]] || rm -rf -- "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$CL" install || { echo "$PROG: installing the ceph packages failed" >&2; exit 1; }

for n in "${NAMES[@]}"; do
	if [[ -e $ROOT/$n ]]; then
		echo "$PROG: stopping leftover cluster $n of an earlier run ($ROOT/$n)" >&2
		"$CL" stop "$n"
	fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/with-clusters.XXXXXX")
t=$(now)
for i in "${!NAMES[@]}"; do
	"$CL" start "${NAMES[$i]}" "${PORTS[$i]}" >"$TMP/${NAMES[$i]}" &
	STARTERS+=($!)
done
failed=()
for i in "${!NAMES[@]}"; do
	rc=0
	wait "${STARTERS[$i]}" || rc=$?
	((rc == 0)) || failed+=("${NAMES[$i]} (port ${PORTS[$i]}, exit $rc)")
done
STARTERS=()
if ((${#failed[@]} > 0)); then
	echo "$PROG: cluster start failed: ${failed[*]}; see the messages above" >&2
	exit 1
fi
RBDCP_CONF1=$(<"$TMP/c1")
RBDCP_CONF2=$(<"$TMP/c2")
[[ -f $RBDCP_CONF1 && -f $RBDCP_CONF2 ]] || { echo "$PROG: ceph-local.sh printed no conf path" >&2; exit 1; }
export RBDCP_CONF1 RBDCP_CONF2 RBDCP_CLUSTERS=1
echo "$PROG: clusters up in $(since "$t") s: RBDCP_CONF1=$RBDCP_CONF1 RBDCP_CONF2=$RBDCP_CONF2" >&2

rc=0
"$@" || rc=$?
exit "$rc"
