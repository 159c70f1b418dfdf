#!/usr/bin/env bash
# Runs a command with four fresh throw-away local Ceph clusters (c1 to c4) and always tears them down afterwards.
#
# Usage: with-clusters.sh CMD [ARGS...]
#   Starts c1 (mon port ${RBDCP_C1_PORT:-13100}), c2 (${RBDCP_C2_PORT:-13200}) and c3 (${RBDCP_C3_PORT:-13300};
#   bluestore and a mgr: for pool quotas and OSD kill/restart tests) and c4 (${RBDCP_C4_PORT:-13400}; three
#   bluestore OSDs and pool `ec`, erasure-coded with overwrites: for EC data pools) in parallel with
#   ceph-local.sh, exports RBDCP_CONF1 to RBDCP_CONF4 (their ceph.conf paths; the keyrings, far.conf etc. are
#   next to them), RBDCP_CEPH_ROOT (absolute) and RBDCP_CLUSTERS=1, runs CMD, stops the clusters on exit,
#   INT and TERM, and exits with CMD's status. RBDCP_C3=0 skips c3 and RBDCP_C4=0 skips c4 (their
#   RBDCP_CONFn is then unset). Clusters live in ${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}/{c1,c2,c3,c4};
#   leftovers of an earlier run there are stopped first, so two concurrent runs need different
#   RBDCP_CEPH_ROOTs and ports. CMD can act on them with ceph-local.sh, e.g. `ceph-local.sh osd-kill c3`
#   (it finds them through RBDCP_CEPH_ROOT).
# Example: scripts/with-clusters.sh cargo test -- --include-ignored
set -euo pipefail

PROG=${0##*/}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL=$HERE/ceph-local.sh
ROOT=${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}
[[ $ROOT == /* ]] || ROOT=$PWD/$ROOT # exported for CMD, which may run ceph-local.sh from elsewhere
ROOT=${ROOT%/}
export RBDCP_CEPH_ROOT=$ROOT
ROOT_EXISTED=0
[[ ! -e $ROOT ]] || ROOT_EXISTED=1
NAMES=(c1 c2)
PORTS=("${RBDCP_C1_PORT:-13100}" "${RBDCP_C2_PORT:-13200}")
OPTS=("" "")
if [[ ${RBDCP_C3:-1} != 0 ]]; then
	NAMES+=(c3)
	PORTS+=("${RBDCP_C3_PORT:-13300}")
	OPTS+=("--bluestore --mgr")
fi
if [[ ${RBDCP_C4:-1} != 0 ]]; then
	NAMES+=(c4)
	PORTS+=("${RBDCP_C4_PORT:-13400}")
	OPTS+=("--bluestore --ec")
fi

if (($# == 0)); then
	sed -n '4,15s/^# \{0,1\}//p' "$0" >&2
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
	((ROOT_EXISTED)) || rmdir -- "$ROOT" 2>/dev/null || true # ceph-local.sh created it; if nothing else is in it
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
	# shellcheck disable=SC2086 # OPTS are words
	"$CL" start "${NAMES[$i]}" "${PORTS[$i]}" ${OPTS[$i]} >"$TMP/${NAMES[$i]}" &
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
confs="RBDCP_CONF1=$RBDCP_CONF1 RBDCP_CONF2=$RBDCP_CONF2"
for n in 3 4; do
	var=RBDCP_CONF$n
	if [[ -f $TMP/c$n ]]; then
		printf -v "$var" '%s' "$(<"$TMP/c$n")"
		[[ -f ${!var} ]] || { echo "$PROG: ceph-local.sh printed no conf path for c$n" >&2; exit 1; }
		export "${var?}"
		confs+=" $var=${!var}"
	else
		unset "$var"
	fi
done
echo "$PROG: clusters up in $(since "$t") s: $confs" >&2

rc=0
"$@" || rc=$?
exit "$rc"
