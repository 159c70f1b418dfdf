#!/usr/bin/env bash
# Starts and stops throw-away single-node Ceph clusters (1 mon + 1 memstore OSD) for rbdcp tests, benchmarks and demos.
#
# Usage:
#   ceph-local.sh install            install the Debian packages needed (quiet and fast when present)
#   ceph-local.sh start NAME PORT [--bluestore] [--mgr] [--ec]
#                                    start cluster NAME (mon on 127.0.0.1:PORT, msgr2 only);
#                                    prints $ROOT/NAME/ceph.conf on stdout, progress on stderr
#       --bluestore                  the OSD keeps its data in bluestore on a sparse 8 GiB file
#                                    ($ROOT/NAME/osd.0.block), so it survives osd-kill + osd-start
#       --mgr                        also run a ceph-mgr (mgr.a, only the always-on modules); needed for
#                                    pool quotas, `ceph df`, `ceph pg stat`, `ceph osd pool stats`
#       --ec                         also run osd.1 and osd.2 and make pool `ec`: erasure-coded (k=2, m=1,
#                                    one chunk per OSD) with overwrites allowed, an RBD data pool
#                                    (`rbd create --data-pool ec`); on memstore through the mon's
#                                    mon_debug_no_require_bluestore_for_ec_overwrites
#   ceph-local.sh stop NAME          kill the cluster's daemons and remove $ROOT/NAME (idempotent)
#   ceph-local.sh status NAME        exit 0 if all daemons of NAME are alive
#   ceph-local.sh osd-kill NAME      SIGKILL osd.0, wait until it is gone, mark it down in the osdmap
#   ceph-local.sh osd-start NAME     start osd.0 again (--bluestore clusters only), wait until it is up
#                                    and every PG of every pool answers
#   ceph-local.sh osd-pause NAME     freeze osd.0 (SIGSTOP)
#   ceph-local.sh osd-resume NAME    thaw osd.0 (SIGCONT)
#   ceph-local.sh unstick NAME [SECS]
#                                    if osd.0 has ops stuck "waiting for readable" (or older than SECS,
#                                    default 10) or an I/O probe fails, mark it down and wait until it
#                                    is up again and I/O works; prints one line saying what it found and
#                                    did; exit 0 if I/O works at the end
#
# ROOT is ${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}. In $ROOT/NAME, besides ceph.conf and the daemons' data:
#   keyring          client.admin (ceph.conf's [client] points at it)
#   ro.keyring       client.ro,    mon 'profile rbd' osd 'profile rbd-read-only'
#   rbdcp.keyring    client.rbdcp, mon 'profile rbd' osd 'profile rbd pool=rbd'
#   far.conf         ceph.conf plus ms_inject_delay_* (every OSD reply reaches the client 0-10 ms late)
#   log/             mon.a.log, osd.0.log, cluster.log, bringup.log (output of the bring-up commands),
#                    mgr.a.log with --mgr, ops.log (output of the ceph commands of osd-kill, osd-start, unstick)
#   pids             "DAEMON PID" lines (mon.a, osd.0, mgr.a); osd-start replaces the osd.0 line
#   osd.0.block      with --bluestore: the OSD's sparse block file (osd.0/ holds only its metadata)
#   mgr.a/           with --mgr: the mgr's data and keyring (mgr.a, caps mon 'allow profile mgr' osd/mds 'allow *')
# e.g.  rbd -c DIR/ceph.conf --id ro --keyring DIR/ro.keyring export rbd/x - >x.img
# Facts behind the settings: /work/shared/notes/ceph-local.md
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev librados-dev uuid-runtime libgoogle-perftools4 fakeroot lintian man-db jq time)
ROOT=${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}
[[ $ROOT == /* ]] || ROOT=$PWD/$ROOT   # the conf path must be absolute: stop matches it in /proc/PID/cmdline
ROOT=${ROOT%/}
PROG=${0##*/}

NAME=''
DIR=''
CONF=''
BLUESTORE=0 # start --bluestore
MGR=0       # start --mgr
EC=0        # start --ec
T0=${EPOCHREALTIME/,/.}

log() { printf '[%s %5.2fs] %s\n' "${NAME:-$PROG}" "$(elapsed)" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG${NAME:+ ($NAME)}" "$*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.2f", b - a }'; }
usage() { sed -n '3,/^#$/{/^#$/d;s/^# \{0,1\}//p;}' "$0" >&2; exit 2; }

set_name() {
	[[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad cluster name '${1:-}' (letters, digits, . _ - only)"
	NAME=$1
	DIR=$ROOT/$NAME
	CONF=$DIR/ceph.conf
}

# ---------------------------------------------------------------- processes

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	[[ ${1:-} =~ ^[0-9]+$ ]] || return 1
	st=$(awk '$1 == "State:" { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

# owned PID: alive, and its command line names this cluster's conf (guards against PID reuse).
owned() {
	local args
	alive "$1" || return 1
	args=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	grep -qxF -- "$CONF" <<<"$args"
}

# PIDs this cluster recorded: DIR/pids (written by start) and the daemons' own pid files.
recorded_pids() {
	local f
	{
		[[ -f $DIR/pids ]] && awk '{ print $2 }' "$DIR/pids"
		for f in "$DIR"/run/*.pid; do [[ -f $f ]] && cat "$f"; done
	} 2>/dev/null | grep -E '^[0-9]+$' | sort -u || true
}

daemon_pid() { # daemon_pid mon.a|osd.0|mgr.a
	[[ -f $DIR/pids ]] || return 0
	awk -v d="$1" '$1 == d { print $2 }' "$DIR/pids"
}

# proc_state PID: R, S, D, T (stopped, e.g. by osd-pause), Z...; empty if there is no such process.
proc_state() { awk '$1 == "State:" { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# The cluster was started with --mgr / --bluestore (its conf says so).
has_mgr() { grep -qx '\[mgr\]' "$CONF" 2>/dev/null; }
is_bluestore() { grep -qx 'osd_objectstore = bluestore' "$CONF" 2>/dev/null; }

# Kills this cluster's daemons (SIGKILL) and waits until they are gone or zombies.
kill_daemons() {
	local pid victims=() left deadline=$((SECONDS + 15))
	for pid in $(recorded_pids); do
		if owned "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
			victims+=("$pid")
		fi
	done
	while :; do
		left=()
		for pid in "${victims[@]}"; do alive "$pid" && left+=("$pid"); done
		((${#left[@]} == 0)) && return 0
		if ((SECONDS >= deadline)); then
			printf '%s: %s: processes still alive after SIGKILL: %s\n' "$PROG" "$NAME" "${left[*]}" >&2
			return 1
		fi
		sleep 0.05
	done
}

# ---------------------------------------------------------------- install

cmd_install() {
	local st missing=() p sudo=()
	st=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
	for p in "${PACKAGES[@]}"; do
		grep -qx "$p installed" <<<"$st" || missing+=("$p")
	done
	((${#missing[@]} == 0)) && return 0
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "not root and no sudo: cannot install ${missing[*]}"
		sudo=(sudo)
	fi
	echo "$PROG: installing ${missing[*]}" >&2
	"${sudo[@]}" apt-get update -q >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# ---------------------------------------------------------------- status / stop

cmd_status() {
	set_name "${1:-}"
	local mon osd mgr='' extra=''
	mon=$(daemon_pid mon.a)
	osd=$(daemon_pid osd.0)
	if has_mgr; then
		mgr=$(daemon_pid mgr.a)
		if [[ -n $mgr ]] && owned "$mgr"; then extra=", mgr.a pid $mgr"; else mon=''; fi
	fi
	[[ -n $osd && $(proc_state "$osd") == T ]] && extra+=", osd.0 paused"
	if [[ -n $mon && -n $osd ]] && owned "$mon" && owned "$osd"; then
		echo "$NAME: running (mon.a pid $mon, osd.0 pid $osd$extra, conf $CONF)"
		return 0
	fi
	echo "$NAME: not running"
	return 1
}

cmd_stop() {
	set_name "${1:-}"
	local rc=0
	[[ -e $DIR ]] || return 0
	kill_daemons || rc=1
	rm -rf -- "$DIR"
	return "$rc"
}

# ---------------------------------------------------------------- OSD faults: kill, start, pause, resume, unstick

# Output of the ceph commands these run goes to log/ops.log; what they did to stderr.
OPSLOG=/dev/null

# need_cluster: the cluster was started and its mon is alive.
need_cluster() {
	local mon
	[[ -f $CONF ]] || die "cluster '$NAME' is not started ($CONF does not exist)"
	mon=$(daemon_pid mon.a)
	if [[ -z $mon ]] || ! owned "$mon"; then die "the mon of cluster '$NAME' is not running"; fi
	OPSLOG=$DIR/log/ops.log
	printf '\n### %s %s\n' "$(date '+%F %T')" "$*" >>"$OPSLOG"
}

# running_osd: prints osd.0's pid; fails if it is not running.
running_osd() {
	local pid
	pid=$(daemon_pid osd.0)
	[[ -n $pid ]] && owned "$pid" && echo "$pid"
}

# wait_state PID SECS STATE...: waits until /proc/PID/status shows one of STATEs (T, S, ...).
wait_state() {
	local pid=$1 deadline=$((SECONDS + $2)) st
	shift 2
	while :; do
		st=$(proc_state "$pid")
		[[ " $* " == *" ${st:-gone} "* ]] && return 0
		((SECONDS < deadline)) || return 1
		sleep 0.02
	done
}

# io_probe SECS: every placement group of every pool answers a listing (a read: it works on a pool that
# is full too); tries again until SECS have passed. A PG that is stuck "waiting for readable" fails it.
io_probe() {
	local deadline=$((SECONDS + $1)) ok p pools
	local R=(timeout 20 rados -c "$CONF" --client_mount_timeout 5 --rados_osd_op_timeout 5)
	while :; do
		ok=1
		if mapfile -t pools < <("${R[@]}" lspools 2>>"$OPSLOG") && ((${#pools[@]} > 0)); then
			for p in "${pools[@]}"; do
				"${R[@]}" -p "$p" ls >/dev/null 2>>"$OPSLOG" || { ok=0; break; }
			done
		else
			ok=0
		fi
		((ok)) && return 0
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# wait_osd_active PID SECS: the (new) OSD process PID says it is active, i.e. it booted and is up in the osdmap.
wait_osd_active() {
	local pid=$1 deadline=$((SECONDS + $2)) st
	while :; do
		st=$(timeout 10 ceph -c "$CONF" daemon osd.0 status 2>>"$OPSLOG") || st=''
		[[ $st == *'"state": "active"'* ]] && return 0
		owned "$pid" || die "ceph-osd (pid $pid) exited; see $DIR/log/osd.0.log"
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

cmd_osd_kill() {
	set_name "${1:-}"
	need_cluster osd-kill
	local pid
	pid=$(running_osd) || die "osd.0 is not running"
	kill -KILL "$pid" 2>/dev/null || true
	wait_state "$pid" 15 Z X gone || die "osd.0 (pid $pid) still alive 15 s after SIGKILL"
	log "osd.0 (pid $pid) killed"
	# A real cluster's other OSDs would report it at once; here only the mon is left to tell.
	if C osd down 0 >>"$OPSLOG" 2>&1; then
		log "osd.0 marked down"
	else
		log "warning: ceph osd down 0 failed (see $OPSLOG)"
	fi
	is_bluestore || log "note: memstore lost the OSD's data; osd-start needs a cluster started with --bluestore"
}

cmd_osd_start() {
	set_name "${1:-}"
	need_cluster osd-start
	local pid
	if pid=$(running_osd); then die "osd.0 is already running (pid $pid)"; fi
	is_bluestore || die "osd.0 keeps its data in memstore, which loses it when the OSD is killed; start the cluster with --bluestore"
	tcmalloc_preload
	rm -f -- "$DIR/run/osd.0.pid" # a killed OSD leaves its pid file behind
	launch "$DIR/log/osd.0.out" env "${PRELOAD[@]}" ceph-osd -c "$CONF" -i 0 ||
		die "ceph-osd failed to start; see $DIR/log/osd.0.out and osd.0.log"
	pid=$(read_pidfile osd.0)
	wait_osd_active "$pid" 60 || die "osd.0 (pid $pid) not up after 60 s"
	log "osd.0 up again (pid $pid)"
	io_probe 60 || die "osd.0 is up, but I/O on the pools still fails after 60 s"
	log "I/O works"
}

cmd_osd_pause() {
	set_name "${1:-}"
	local pid
	pid=$(running_osd) || die "osd.0 is not running"
	kill -STOP "$pid"
	wait_state "$pid" 5 T || die "osd.0 (pid $pid) not stopped 5 s after SIGSTOP"
	log "osd.0 (pid $pid) paused (SIGSTOP)"
}

cmd_osd_resume() {
	set_name "${1:-}"
	local pid
	pid=$(running_osd) || die "osd.0 is not running"
	kill -CONT "$pid"
	wait_state "$pid" 5 R S D || die "osd.0 (pid $pid) still stopped 5 s after SIGCONT"
	log "osd.0 (pid $pid) resumed (SIGCONT)"
}

# stuck_ops MAX_AGE: prints a summary of osd.0's ops in flight that wait "waiting for readable" or are
# older than MAX_AGE seconds, both in a first look and in a second one 2 s later (so that the ops a freeze
# held back, which finish right after SIGCONT, do not count); prints nothing if there are none.
stuck_ops() {
	local max=$1 a=$DIR/run/ops-1.json b=$DIR/run/ops-2.json
	timeout 10 ceph -c "$CONF" daemon osd.0 dump_ops_in_flight >"$a" 2>>"$OPSLOG" || return 1
	local first
	first=$(stuck_filter "$max" "$a") || return 1
	[[ -n $first ]] || return 0
	sleep 2
	timeout 10 ceph -c "$CONF" daemon osd.0 dump_ops_in_flight >"$b" 2>>"$OPSLOG" || return 1
	stuck_filter "$max" "$b" "$a"
}

# stuck_filter MAX_AGE JSON_FILE [EARLIER_JSON_FILE]: the summary for stuck_ops.
stuck_filter() {
	python3 - "$@" <<'PY'
import json, sys
def load(path):
    with open(path) as f:
        return json.load(f)
max_age, now = float(sys.argv[1]), load(sys.argv[2])
seen = {op.get("description") for op in load(sys.argv[3]).get("ops", [])} if len(sys.argv) > 3 else None
stuck = []
for op in now.get("ops", []):
    td = op.get("type_data") or {}
    states = [str(td.get("flag_point", ""))] + [str(e.get("event", "")) for e in td.get("events", [])[-1:]]
    readable = any("waiting for readable" in s for s in states)
    if (readable or float(op.get("age", 0)) >= max_age) and (seen is None or op.get("description") in seen):
        stuck.append((float(op.get("age", 0)), readable))
if stuck:
    n = sum(1 for _, r in stuck if r)
    print("%d op(s) stuck (oldest %.1f s, %d waiting for readable)" % (len(stuck), max(a for a, _ in stuck), n))
PY
}

cmd_unstick() {
	set_name "${1:-}"
	local max=${2:-10}
	[[ $max =~ ^[0-9]+$ ]] || die "bad age '$max' (whole seconds)"
	need_cluster unstick
	local pid why st deadline
	pid=$(running_osd) || die "osd.0 is not running"
	[[ $(proc_state "$pid") != T ]] || die "osd.0 (pid $pid) is paused; run: $PROG osd-resume $NAME"
	why=$(stuck_ops "$max") || die "cannot read osd.0's ops in flight (admin socket $DIR/run/osd.0.asok)"
	if [[ -z $why ]]; then
		if io_probe 0; then
			echo "$NAME: nothing stuck (no old ops in flight, I/O works)"
			return 0
		fi
		why="I/O probe failed"
		st=$(stuck_ops 0) && [[ -n $st ]] && why+=", $st"
	fi
	log "osd.0: $why; marking it down"
	local t0=$SECONDS
	C osd down 0 >>"$OPSLOG" 2>&1 || die "ceph osd down 0 failed (see $OPSLOG)"
	# The mon answers once the map with osd.0 down is committed; the OSD then boots again by itself.
	deadline=$((SECONDS + 60))
	while :; do
		st=$(C osd stat -f json 2>>"$OPSLOG") || st=''
		[[ $st == *'"num_up_osds":1'* ]] && break
		owned "$pid" || die "ceph-osd (pid $pid) exited; see $DIR/log/osd.0.log"
		((SECONDS < deadline)) || die "osd.0 not up again 60 s after being marked down: $st"
		sleep 0.2
	done
	log "osd.0 up again"
	io_probe 60 || die "osd.0 is up again, but I/O on the pools still fails after 60 s"
	log "I/O works"
	echo "$NAME: $why; marked osd.0 down; up again and I/O works after $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- start

C() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
RBD() { timeout 60 rbd -c "$CONF" "$@"; }

# step DESCRIPTION CMD...: runs CMD with its output in log/bringup.log; fails the start if CMD fails.
step() {
	local what=$1 rc=0
	shift
	printf '\n### %ss %s\n$ %s\n' "$(elapsed)" "$what" "$*" >>"$DIR/log/bringup.log"
	"$@" >>"$DIR/log/bringup.log" 2>&1 || rc=$?
	((rc == 0)) || die "$what failed (exit $rc): $*"
}

# port_busy PORT: some TCP socket uses local port PORT (TIME_WAIT does not count: ceph binds with SO_REUSEADDR).
# Note: ports in Linux's ephemeral range (32768-60999) can be held by outgoing connections;
# with-clusters.sh defaults to 13100/13200, below it.
# Whether something listens on 127.0.0.1:PORT. Only a listener keeps the mon from binding
# (it sets SO_REUSEADDR); the closing connections a just-stopped cluster leaves on the port
# (TIME_WAIT, FIN_WAIT, CLOSE_WAIT) do not, and counting them broke restarts.
port_busy() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v p="$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}

write_conf() { # write_conf FILE [EXTRA_GLOBAL_LINE...]
	local file=$1 line
	shift
	{
		cat <<EOF
# throw-away test cluster '$NAME', written by $PROG
[global]
fsid = $FSID
mon_host = v2:127.0.0.1:$PORT
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
run_dir = $DIR/run
crash_dir = $DIR/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_warn_on_too_few_osds = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
EOF
		if ((EC && !BLUESTORE)); then
			cat <<EOF
# the mon allows EC overwrites on bluestore only (its deep scrub checks checksums); memstore serves
# them as well, which is what the clients see
mon_debug_no_require_bluestore_for_ec_overwrites = true
EOF
		fi
		for line in "$@"; do printf '%s\n' "$line"; done
		cat <<EOF

[client]
keyring = $DIR/keyring
client_mount_timeout = 30
rados_osd_op_timeout = 60

[mon]
mon_data = $DIR/mon.\$id
paxos_propose_interval = 0.01
paxos_min_wait = 0.001
mon_cluster_log_file = $DIR/log/cluster.log
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
EOF
		if ((MGR)); then
			cat <<EOF
# the mon applies pool quotas (sets the pool's full flag) in its tick, from the usage the mgr reports
mon_tick_interval = 1
mgr_initial_modules =
EOF
		fi
		cat <<EOF

[osd]
EOF
		if ((BLUESTORE)); then
			cat <<EOF
osd_objectstore = bluestore
# the block file must be outside osd_data (mkfs fails with ELOOP otherwise); sparse, created by mkfs
bluestore_block_path = $DIR/\$name.block
bluestore_block_create = true
bluestore_block_size = 8589934592
bluestore_fsck_on_mkfs = false
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
# each close of the block device waits for the aio thread's poll timeout (default 250 ms); mkfs and
# mount open and close it over a dozen times
bdev_aio_poll_ms = 10
EOF
		else
			cat <<EOF
osd_objectstore = memstore
memstore_device_bytes = 8589934592
memstore_page_set = true
EOF
		fi
		cat <<EOF
osd_data = $DIR/osd.\$id
osd_snap_trim_sleep_hdd = 0
osd_delete_sleep_hdd = 0
osd_recovery_sleep_hdd = 0
# unstick marks the OSD down; by default the 5th mark-down within 10 minutes makes it shut itself down
osd_max_markdown_count = 1000
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
EOF
		if ((MGR)); then
			cat <<EOF

[mgr]
mgr_data = $DIR/mgr.\$id
keyring = $DIR/mgr.\$id/keyring
# only the always-on python modules (the mon reports HEALTH_ERR if one is missing); pool usage
# (for quotas, ceph df) comes from the C++ core
mgr_disabled_modules = $MGR_MODULES
# report usage every second instead of every 5 s (OSD -> mgr) and 2 s (mgr -> mon)
mgr_stats_period = 1
mgr_tick_period = 1
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
EOF
		fi
	} >"$file"
}

# The mgr python modules that are not always on (the mon's list for octopus to squid), comma-separated:
# the [mgr] section disables them.
MGR_ALWAYS_ON=" balancer crash devicehealth orchestrator pg_autoscaler progress rbd_support status telemetry volumes "
mgr_modules() {
	local d n names=()
	for d in /usr/share/ceph/mgr/*/; do
		n=$(basename "$d")
		[[ -f $d/module.py && $MGR_ALWAYS_ON != *" $n "* ]] && names+=("$n")
	done
	local IFS=,
	echo "${names[*]}"
}

# Waits for a daemon's pid file (the daemons write it before their launcher returns; this is a safety net).
read_pidfile() { # read_pidfile DAEMON
	local f=$DIR/run/$1.pid pid='' deadline=$((SECONDS + 10))
	while :; do
		[[ -s $f ]] && pid=$(<"$f")
		[[ $pid =~ ^[0-9]+$ ]] && break
		((SECONDS < deadline)) || die "$1 wrote no pid file ($f)"
		sleep 0.05
	done
	if [[ -f $DIR/pids ]]; then # osd-start: the new pid replaces the old one
		awk -v d="$1" '$1 != d' "$DIR/pids" >"$DIR/pids.new"
		mv -f -- "$DIR/pids.new" "$DIR/pids"
	fi
	echo "$1 $pid" >>"$DIR/pids"
	owned "$pid" || die "$1 (pid $pid) died right after starting"
	echo "$pid"
}

# Sets PRELOAD to the env assignment that makes the OSD use tcmalloc (much faster overwrites), if present.
PRELOAD=()
tcmalloc_preload() {
	local tcmalloc
	for tcmalloc in /usr/lib/*/libtcmalloc_minimal.so.4 ''; do [[ -e $tcmalloc ]] && break; done
	if [[ -n $tcmalloc ]]; then
		PRELOAD=(LD_PRELOAD="$tcmalloc")
	else
		log "warning: libtcmalloc_minimal.so.4 not found, the OSD runs with glibc malloc"
	fi
}

# launch OUTFILE CMD...: starts a self-daemonizing ceph daemon with stdin /dev/null, stdout+stderr to OUTFILE
# and every other descriptor closed, so it holds on to none of the caller's pipes (fd 3 here is our stdout).
launch() {
	local out=$1
	shift
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec $fd>&-"; fi
		done 2>/dev/null
		exec "$@" </dev/null >"$out" 2>&1
	)
}

# new_osd ID: creates osd.ID (the mon gives it ID, the next free one), starts it and prints its pid.
new_osd() {
	local n=$1 uuid secret id
	mkdir -p "$DIR/osd.$n"
	uuid=$(uuidgen)
	secret=$(ceph-authtool --gen-print-key)
	id=$(printf '{"cephx_secret": "%s"}\n' "$secret" | C osd new "$uuid" -i - 2>>"$DIR/log/bringup.log") ||
		die "ceph osd new failed"
	[[ $id == "$n" ]] || die "ceph osd new returned id '$id', expected $n"
	step "osd.$n keyring" ceph-authtool --create-keyring "$DIR/osd.$n/keyring" --name "osd.$n" --add-key "$secret"
	step "osd.$n mkfs" ceph-osd -c "$CONF" -i "$n" --mkfs --osd-uuid "$uuid"
	launch "$DIR/log/osd.$n.out" env "${PRELOAD[@]}" ceph-osd -c "$CONF" -i "$n" ||
		die "ceph-osd $n failed to start"
	read_pidfile "osd.$n"
}

start_cleanup() {
	local rc=$1 f
	trap - EXIT INT TERM
	((rc == 0)) && return 0
	if ((rc == 130 || rc == 143)); then
		echo "$PROG: start of cluster '$NAME' interrupted; killing what it started" >&2
		kill_daemons || true
		rm -rf -- "$DIR"
		exit "$rc"
	fi
	echo "$PROG: start of cluster '$NAME' failed; killing what it started" >&2
	local d pid
	for d in mon.a osd.0 mgr.a; do
		pid=$(daemon_pid "$d")
		[[ -z $pid ]] || owned "$pid" || echo "$PROG: $d (pid $pid) had died" >&2
	done
	kill_daemons || true
	for f in "$DIR"/log/bringup.log "$DIR"/log/mon.a.out "$DIR"/log/mon.a.log \
		"$DIR"/log/osd.0.out "$DIR"/log/osd.0.log "$DIR"/log/mgr.a.out "$DIR"/log/mgr.a.log; do
		[[ -s $f ]] || continue
		printf -- '----- tail of %s -----\n' "$f" >&2
		tail -n 25 "$f" >&2
	done
	if [[ -n ${RBDCP_CEPH_KEEP_FAILED:-} ]]; then
		echo "$PROG: kept $DIR (RBDCP_CEPH_KEEP_FAILED is set)" >&2
	else
		rm -rf -- "$DIR"
	fi
	exit "$rc"
}

cmd_start() {
	set_name "${1:-}"
	PORT=${2:-}
	if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then die "bad port '$PORT'"; fi
	shift 2
	local opt
	for opt in "$@"; do
		case $opt in
		--bluestore) BLUESTORE=1 ;;
		--mgr) MGR=1 ;;
		--ec) EC=1 ;;
		*) usage ;;
		esac
	done

	# Everything goes to stderr; only the conf path goes to the real stdout (fd 3), at the end.
	exec 3>&1 1>&2

	local pid
	for pid in $(recorded_pids); do
		owned "$pid" && die "cluster '$NAME' is already running (pid $pid, $DIR); run: $PROG stop $NAME"
	done
	port_busy "$PORT" && die "port $PORT on 127.0.0.1 is busy (see: ss -tanp | grep :$PORT)"
	if [[ -e $DIR ]]; then
		log "removing leftovers of a dead cluster in $DIR"
		rm -rf -- "$DIR"
	fi

	tcmalloc_preload
	local need needs=(ceph ceph-mon ceph-osd ceph-authtool monmaptool rados rbd uuidgen timeout)
	((MGR)) && needs+=(ceph-mgr)
	for need in "${needs[@]}"; do
		command -v "$need" >/dev/null || die "$need not found; run: $PROG install"
	done
	MGR_MODULES=''
	((MGR)) && MGR_MODULES=$(mgr_modules)

	mkdir -p "$ROOT"
	mkdir "$DIR" || die "cannot create $DIR"
	trap 'start_cleanup $?' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$DIR"/{run,log,crash,mon.a,osd.0}
	((MGR)) && mkdir -p "$DIR/mgr.a"

	FSID=$(uuidgen)
	write_conf "$CONF"
	step "monmaptool" monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$PORT]" "$DIR/monmap"
	step "mon keyring" ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *'
	step "admin keyring" ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n client.admin \
		--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
	# The restricted users go into the mon's initial keyring too: cheaper than two `ceph auth` calls later.
	step "ro keyring" ceph-authtool --create-keyring "$DIR/ro.keyring" --gen-key -n client.ro \
		--cap mon 'profile rbd' --cap osd 'profile rbd-read-only'
	step "rbdcp keyring" ceph-authtool --create-keyring "$DIR/rbdcp.keyring" --gen-key -n client.rbdcp \
		--cap mon 'profile rbd' --cap osd 'profile rbd pool=rbd'
	local k keyrings=(keyring ro.keyring rbdcp.keyring)
	if ((MGR)); then
		step "mgr keyring" ceph-authtool --create-keyring "$DIR/mgr.a/keyring" --gen-key -n mgr.a \
			--cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
		keyrings+=(mgr.a/keyring)
	fi
	for k in "${keyrings[@]}"; do
		step "import $k" ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/$k"
	done
	step "mon mkfs" ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"

	launch "$DIR/log/mon.a.out" ceph-mon -c "$CONF" -i a || die "ceph-mon failed to start"
	local mon osd
	mon=$(read_pidfile mon.a)
	local deadline=$((SECONDS + 30))
	# rados (C++) answers in 0.05 s where the python ceph CLI needs 0.2 s.
	until timeout 10 rados -c "$CONF" --client_mount_timeout 5 lspools >>"$DIR/log/bringup.log" 2>&1; do
		owned "$mon" || die "ceph-mon (pid $mon) exited"
		((SECONDS < deadline)) || die "mon not answering on 127.0.0.1:$PORT after 30 s"
		sleep 0.1
	done
	log "mon.a up on v2:127.0.0.1:$PORT (pid $mon)"

	local mgr=''
	if ((MGR)); then # it starts while the OSD is created; waited for at the end
		# in the mon's config database, the only place the mgr reads module options from:
		# devicehealth would create a pool device_health_metrics and scrape SMART data
		step "mgr config" C config set mgr mgr/devicehealth/enable_monitoring false --force
		launch "$DIR/log/mgr.a.out" ceph-mgr -c "$CONF" -i a || die "ceph-mgr failed to start"
		mgr=$(read_pidfile mgr.a)
	fi

	osd=$(new_osd 0)
	local osds=1 i
	if ((EC)); then # two more OSDs, for an EC pool of three chunks
		for i in 1 2; do new_osd "$i" >/dev/null; done
		osds=3
	fi
	step "pool create" C osd pool create rbd 8 8 replicated # a mon-only operation, overlaps the OSD boot
	# A second pool, for backups and copies from pool to pool within one cluster.
	step "pool create backup" C osd pool create backup 8 8 replicated
	local st=''
	deadline=$((SECONDS + 60))
	while :; do
		st=$(C osd stat -f json 2>>"$DIR/log/bringup.log") || st=''
		[[ $st == *"\"num_up_osds\":$osds"* ]] && break
		owned "$osd" || die "ceph-osd (pid $osd) exited"
		owned "$mon" || die "ceph-mon (pid $mon) exited"
		[[ -z $mgr ]] || owned "$mgr" || die "ceph-mgr (pid $mgr) exited"
		((SECONDS < deadline)) || die "$osds OSD(s) not up after 60 s: $st"
		sleep 0.1
	done
	log "osd.0 up (pid $osd)"
	((EC)) && log "osd.1 and osd.2 up"

	step "rbd pool init" RBD pool init rbd
	step "rbd pool init backup" RBD pool init backup
	write_conf "$DIR/far.conf" \
		"# client side: delay each message from an OSD by a random 0-10 ms (\"destination 5 ms away\");" \
		"# measured: a sequential 4 KiB read takes ~8 ms instead of ~0.1 ms (~4 ms of it is a fixed cost" \
		"# of the injection itself: ms_inject_delay_max = 0.0001 already gives ~4 ms)" \
		"ms_inject_delay_type = osd" "ms_inject_delay_max = 0.01" "ms_inject_delay_probability = 1"

	# Without a mgr nothing reports PG states; a real write proves the pool is usable.
	step "I/O probe: create" RBD create --size 64M rbd/probe
	step "I/O probe: write" RBD bench --io-type write --io-size 4M --io-total 64M rbd/probe
	step "I/O probe: rm" RBD rm --no-progress rbd/probe
	if ((EC)); then
		step "ec profile" C osd erasure-code-profile set ec21 k=2 m=1 crush-failure-domain=osd
		step "pool create ec" C osd pool create ec 8 8 erasure ec21
		step "ec overwrites" C osd pool set ec allow_ec_overwrites true
		step "ec application" C osd pool application enable ec rbd
		step "I/O probe: ec create" RBD create --size 16M --data-pool ec rbd/probe-ec
		step "I/O probe: ec write" RBD bench --io-type write --io-size 4K --io-total 1M rbd/probe-ec
		step "I/O probe: ec rm" RBD rm --no-progress rbd/probe-ec
		log "pool ec (k=2, m=1, overwrites) ready"
	fi

	if ((MGR)); then
		deadline=$((SECONDS + 60))
		while :; do
			st=$(C mgr stat -f json 2>>"$DIR/log/bringup.log") || st=''
			[[ $st == *'"available":true'* ]] && break
			owned "$mgr" || die "ceph-mgr (pid $mgr) exited"
			((SECONDS < deadline)) || die "mgr.a not active after 60 s: $st"
			sleep 0.2
		done
		log "mgr.a active (pid $mgr)"
	fi

	local health
	health=$(C health 2>>"$DIR/log/bringup.log") || die "ceph health failed"
	[[ $health != *'full osd'* ]] || die "ceph health reports a full OSD: $health"
	log "ready, $health; conf $CONF"

	trap - EXIT INT TERM
	echo "$CONF" >&3
}

# ---------------------------------------------------------------- main

case ${1:-} in
install) (($# == 1)) || usage; cmd_install ;;
start) (($# >= 3 && $# <= 6)) || usage; shift; cmd_start "$@" ;;
stop) (($# == 2)) || usage; cmd_stop "$2" ;;
status) (($# == 2)) || usage; cmd_status "$2" ;;
osd-kill) (($# == 2)) || usage; cmd_osd_kill "$2" ;;
osd-start) (($# == 2)) || usage; cmd_osd_start "$2" ;;
osd-pause) (($# == 2)) || usage; cmd_osd_pause "$2" ;;
osd-resume) (($# == 2)) || usage; cmd_osd_resume "$2" ;;
unstick) (($# == 2 || $# == 3)) || usage; shift; cmd_unstick "$@" ;;
*) usage ;;
esac
