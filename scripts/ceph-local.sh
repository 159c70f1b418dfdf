#!/usr/bin/env bash
# Starts and stops throw-away single-node Ceph clusters (1 mon + 1 memstore OSD) for rbdcp tests, benchmarks and demos.
#
# Usage:
#   ceph-local.sh install            install the Debian packages needed (quiet and fast when present)
#   ceph-local.sh start NAME PORT    start cluster NAME (mon on 127.0.0.1:PORT, msgr2 only);
#                                    prints $ROOT/NAME/ceph.conf on stdout, progress on stderr
#   ceph-local.sh stop NAME          kill the cluster's daemons and remove $ROOT/NAME (idempotent)
#   ceph-local.sh status NAME        exit 0 if both daemons of NAME are alive
#
# ROOT is ${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}. In $ROOT/NAME, besides ceph.conf and the daemons' data:
#   keyring          client.admin (ceph.conf's [client] points at it)
#   ro.keyring       client.ro,    mon 'profile rbd' osd 'profile rbd-read-only'
#   rbdcp.keyring    client.rbdcp, mon 'profile rbd' osd 'profile rbd pool=rbd'
#   far.conf         ceph.conf plus ms_inject_delay_* (every OSD reply reaches the client 0-10 ms late)
#   log/             mon.a.log, osd.0.log, cluster.log, bringup.log (output of the bring-up commands)
# e.g.  rbd -c DIR/ceph.conf --id ro --keyring DIR/ro.keyring export rbd/x - >x.img
# Facts behind the settings: /work/shared/notes/ceph-local.md
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev uuid-runtime libgoogle-perftools4)
ROOT=${RBDCP_CEPH_ROOT:-/tmp/rbdcp-ceph}
[[ $ROOT == /* ]] || ROOT=$PWD/$ROOT   # the conf path must be absolute: stop matches it in /proc/PID/cmdline
ROOT=${ROOT%/}
PROG=${0##*/}

NAME=''
DIR=''
CONF=''
T0=${EPOCHREALTIME/,/.}

log() { printf '[%s %5.2fs] %s\n' "${NAME:-$PROG}" "$(elapsed)" "$*" >&2; }
die() { printf '%s: %s\n' "$PROG${NAME:+ ($NAME)}" "$*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.2f", b - a }'; }
usage() { sed -n '3,9s/^# \{0,1\}//p' "$0" >&2; exit 2; }

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

daemon_pid() { # daemon_pid mon.a|osd.0
	[[ -f $DIR/pids ]] || return 0
	awk -v d="$1" '$1 == d { print $2 }' "$DIR/pids"
}

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
	local mon osd
	mon=$(daemon_pid mon.a)
	osd=$(daemon_pid osd.0)
	if [[ -n $mon && -n $osd ]] && owned "$mon" && owned "$osd"; then
		echo "$NAME: running (mon.a pid $mon, osd.0 pid $osd, conf $CONF)"
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
port_busy() {
	local hex
	hex=$(printf ':%04X' "$1")
	awk -v p="$hex" 'FNR > 1 && $4 != "06" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
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

[osd]
osd_objectstore = memstore
memstore_device_bytes = 8589934592
memstore_page_set = true
osd_data = $DIR/osd.\$id
osd_snap_trim_sleep_hdd = 0
osd_delete_sleep_hdd = 0
osd_recovery_sleep_hdd = 0
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
EOF
	} >"$file"
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
	echo "$1 $pid" >>"$DIR/pids"
	owned "$pid" || die "$1 (pid $pid) died right after starting"
	echo "$pid"
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
	for d in mon.a osd.0; do
		pid=$(daemon_pid "$d")
		[[ -z $pid ]] || owned "$pid" || echo "$PROG: $d (pid $pid) had died" >&2
	done
	kill_daemons || true
	for f in "$DIR"/log/bringup.log "$DIR"/log/mon.a.out "$DIR"/log/mon.a.log \
		"$DIR"/log/osd.0.out "$DIR"/log/osd.0.log; do
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

	local tcmalloc='' preload=()
	for tcmalloc in /usr/lib/*/libtcmalloc_minimal.so.4 ''; do [[ -e $tcmalloc ]] && break; done
	if [[ -n $tcmalloc ]]; then
		preload=(LD_PRELOAD="$tcmalloc")
	else
		log "warning: libtcmalloc_minimal.so.4 not found, the OSD runs with glibc malloc"
	fi
	local need
	for need in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados rbd uuidgen timeout; do
		command -v "$need" >/dev/null || die "$need not found; run: $PROG install"
	done

	mkdir -p "$ROOT"
	mkdir "$DIR" || die "cannot create $DIR"
	trap 'start_cleanup $?' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$DIR"/{run,log,crash,mon.a,osd.0}

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
	local k
	for k in keyring ro.keyring rbdcp.keyring; do
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

	local uuid secret id
	uuid=$(uuidgen)
	secret=$(ceph-authtool --gen-print-key)
	id=$(printf '{"cephx_secret": "%s"}\n' "$secret" | C osd new "$uuid" -i - 2>>"$DIR/log/bringup.log") ||
		die "ceph osd new failed"
	[[ $id == 0 ]] || die "ceph osd new returned id '$id', expected 0"
	step "osd keyring" ceph-authtool --create-keyring "$DIR/osd.0/keyring" --name osd.0 --add-key "$secret"
	step "osd mkfs" ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid"
	launch "$DIR/log/osd.0.out" env "${preload[@]}" ceph-osd -c "$CONF" -i 0 || die "ceph-osd failed to start"
	osd=$(read_pidfile osd.0)
	step "pool create" C osd pool create rbd 8 8 replicated # a mon-only operation, overlaps the OSD boot
	local st=''
	deadline=$((SECONDS + 60))
	while :; do
		st=$(C osd stat -f json 2>>"$DIR/log/bringup.log") || st=''
		[[ $st == *'"num_up_osds":1'* ]] && break
		owned "$osd" || die "ceph-osd (pid $osd) exited"
		owned "$mon" || die "ceph-mon (pid $mon) exited"
		((SECONDS < deadline)) || die "osd.0 not up after 60 s: $st"
		sleep 0.1
	done
	log "osd.0 up (pid $osd)"

	step "rbd pool init" RBD pool init rbd
	write_conf "$DIR/far.conf" \
		"# client side: delay each message from an OSD by a random 0-10 ms (\"destination 5 ms away\");" \
		"# measured: a sequential 4 KiB read takes ~8 ms instead of ~0.1 ms (~4 ms of it is a fixed cost" \
		"# of the injection itself: ms_inject_delay_max = 0.0001 already gives ~4 ms)" \
		"ms_inject_delay_type = osd" "ms_inject_delay_max = 0.01" "ms_inject_delay_probability = 1"

	# Without a mgr nothing reports PG states; a real write proves the pool is usable.
	step "I/O probe: create" RBD create --size 64M rbd/probe
	step "I/O probe: write" RBD bench --io-type write --io-size 4M --io-total 64M rbd/probe
	step "I/O probe: rm" RBD rm --no-progress rbd/probe

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
start) (($# == 3)) || usage; cmd_start "$2" "$3" ;;
stop) (($# == 2)) || usage; cmd_stop "$2" ;;
status) (($# == 2)) || usage; cmd_status "$2" ;;
*) usage ;;
esac
