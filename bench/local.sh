#!/usr/bin/env bash
# Benchmark: local raw image copies, rbdcp vs `cp --sparse=always` vs
# `qemu-img convert`, measured side by side in one run (rounds alternate the
# tools), and written to the `local` section of BENCHMARKS.md.
#
# Usage: bench/local.sh            (normally via `make bench`)
#
# Environment:
#   RBDCP           rbdcp binary (default: <repo>/target/release/rbdcp)
#   RBDCP_JOBS      if set, pass `-j RBDCP_JOBS` to rbdcp (default: its own default)
#   BENCH_DIR       work dir on a real disk, not tmpfs (default: /var/tmp/rbdcp-bench)
#   ROUNDS          timed rounds for the 2 GiB image (default 5, minimum 5)
#   ROUNDS_1T       timed rounds for the 1 TiB sparse image (default 3)
#   QEMU_1T_TIMEOUT seconds qemu-img may take on the 1 TiB image in warm-up
#                   before it is left out of that table (default 60)
#   SPARSE_SLACK_MIB  allowed du excess of a copy over the source's data (default 32)
#   BENCH_OUT       report file (default: <repo>/BENCHMARKS.md)
#   BENCH_STRICT=1  exit 3 if the targets do not hold (default: report only)
#   SYNC_AFTER=0    do not end each timed run with `sync DST` (default 1: time until durable)
#
# Correctness failures (copy differs, copy not sparse, a tool fails) always
# exit non-zero and leave BENCH_OUT untouched.
set -euo pipefail
export LC_ALL=C   # "." in $EPOCHREALTIME and plain df/du output

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$ROOT/bench/benchlib.py"
RBDCP=${RBDCP:-$ROOT/target/release/rbdcp}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rbdcp-bench}
ROUNDS=${ROUNDS:-5}
ROUNDS_1T=${ROUNDS_1T:-3}
QEMU_1T_TIMEOUT=${QEMU_1T_TIMEOUT:-60}
SPARSE_SLACK_MIB=${SPARSE_SLACK_MIB:-32}
BENCH_OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
GNU_TIME=/usr/bin/time
SYNC_AFTER=${SYNC_AFTER:-1}

MIB=$((1024 * 1024))
GIB=$((1024 * MIB))
IMG2G_SIZE=$((2 * GIB))
IMG2G_DATA=$((1 * GIB))   # 50 % data
IMG1T_SIZE=$((1024 * GIB))
IMG1T_DATA=$((100 * MIB))
SEED=20240611

log() { printf '[bench/local] %s\n' "$*" >&2; }
die() { printf '[bench/local] FAIL: %s\n' "$*" >&2; exit 1; }

# --- preflight ---------------------------------------------------------------
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 5 ]] || die "ROUNDS must be an integer >= 5 (got '$ROUNDS')"
[[ $ROUNDS_1T =~ ^[0-9]+$ && $ROUNDS_1T -ge 1 ]] || die "ROUNDS_1T must be an integer >= 1"
command -v python3 >/dev/null || die "python3 is required"
[[ -x $RBDCP ]] || die "rbdcp binary not found at '$RBDCP' (cargo build --release, or set RBDCP=)"
RBDCP=$(cd "$(dirname "$RBDCP")" && pwd)/$(basename "$RBDCP")

if [[ ! -x $GNU_TIME ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian package 'time' for $GNU_TIME"
        apt-get install -y -q time >/dev/null || die "apt-get install time failed"
    fi
    [[ -x $GNU_TIME ]] || die "$GNU_TIME (GNU time) missing: apt-get install time"
fi
CP=$(command -v cp)
"$CP" --version 2>/dev/null | head -1 | grep -q 'GNU coreutils' || die "cp is not GNU coreutils cp"
QEMU_IMG=$(command -v qemu-img || true)
QEMU_NOTE=""
if [[ -z $QEMU_IMG ]]; then
    QEMU_NOTE="qemu-img not installed: left out of every table (install qemu-utils; not qemu-block-extra)."
    log "WARNING: $QEMU_NOTE"
fi

mkdir -p "$BENCH_DIR"
FSTYPE=$(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' ')
FSDEV=$(df --output=source "$BENCH_DIR" | tail -1 | tr -d ' ')
case $FSTYPE in
    tmpfs | ramfs | devtmpfs) die "BENCH_DIR=$BENCH_DIR is on $FSTYPE; use a real disk" ;;
esac
AVAIL_KIB=$(df --output=avail -k "$BENCH_DIR" | tail -1 | tr -d ' ')
((AVAIL_KIB > 4 * 1024 * 1024)) || die "need >= 4 GiB free in $BENCH_DIR (have $((AVAIL_KIB / 1024)) MiB)"

RUN_DIR=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
[[ -n $RUN_DIR && -d $RUN_DIR ]] || die "mktemp failed"
cleanup() { rm -rf -- "$RUN_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
OUT="$RUN_DIR/out"       # destinations live here alone, so leftovers show
mkdir "$OUT"
DST="$OUT/dst.img"
RESULTS="$RUN_DIR/results.tsv"
: >"$RESULTS"
START_S=$(date +%s)

# --- images ------------------------------------------------------------------
SRC2G="$RUN_DIR/src-2g.img"
SRC1T="$RUN_DIR/src-1t.img"
log "making images in $RUN_DIR ($FSTYPE on $FSDEV)"
python3 "$LIB" make "$SRC2G" "$IMG2G_SIZE" "$IMG2G_DATA" "$SEED" >"$RUN_DIR/make-2g.txt"
python3 "$LIB" make "$SRC1T" "$IMG1T_SIZE" "$IMG1T_DATA" "$((SEED + 1))" >"$RUN_DIR/make-1t.txt"
EXT2G=$(sed -n 's/.* in \([0-9]*\) extents.*/\1/p' "$RUN_DIR/make-2g.txt")
EXT1T=$(sed -n 's/.* in \([0-9]*\) extents.*/\1/p' "$RUN_DIR/make-1t.txt")
log "$(cat "$RUN_DIR/make-2g.txt")"
log "$(cat "$RUN_DIR/make-1t.txt")"

# --- tools -------------------------------------------------------------------
# tool_cmd TOOL SRC DST: fills the array CMD with the exact command line.
tool_cmd() {
    case $1 in
        rbdcp) CMD=("$RBDCP" copy "$2" "$3" --overwrite --no-progress ${RBDCP_JOBS:+-j "$RBDCP_JOBS"}) ;;
        cp) CMD=("$CP" --sparse=always "$2" "$3") ;;
        qemu-img) CMD=("$QEMU_IMG" convert -f raw -O raw -m 16 -W "$2" "$3") ;;
        *) die "unknown tool $1" ;;
    esac
}
show_cmd() { local a out=""; for a in "$@"; do out+="$(printf '%q' "$a") "; done; printf '%s' "${out% }"; }

# run_one IMAGE TOOL ROUND SRC [TIMEOUT]: fresh DST, sync, timed copy.
# Prints "wall_seconds maxrss_kib gnu_time_seconds"; returns 124 on timeout.
# Wall time comes from $EPOCHREALTIME around the GNU time process (us
# resolution, a few ms of fork/exec overhead, the same for every tool),
# because GNU time's %e has only 10 ms resolution; peak RSS from GNU time's %M.
run_one() {
    local image=$1 tool=$2 round=$3 src=$4 tmo=${5:-} rc=0 t0 t1
    rm -f -- "$DST"
    sync
    tool_cmd "$tool" "$src" "$DST"
    t0=$EPOCHREALTIME
    if [[ -n $tmo ]]; then
        "$GNU_TIME" -f '%e %M' -o "$RUN_DIR/time.out" timeout "$tmo" "${CMD[@]}" \
            >"$RUN_DIR/cmd.log" 2>&1 || rc=$?
    else
        "$GNU_TIME" -f '%e %M' -o "$RUN_DIR/time.out" "${CMD[@]}" \
            >"$RUN_DIR/cmd.log" 2>&1 || rc=$?
    fi
    # Every copy is timed until its data is on disk: rbdcp fsyncs before it exits,
    # cp and qemu-img do not, so `sync DST` (an fsync of that file) follows each tool alike.
    if ((rc == 0)) && [[ $SYNC_AFTER == 1 ]]; then sync -- "$DST"; fi
    t1=$EPOCHREALTIME
    if ((rc == 124)); then return 124; fi
    if ((rc != 0)); then
        cat "$RUN_DIR/cmd.log" >&2
        die "$image $( ((round > 0)) && echo "round $round" || echo warm-up): $tool exited with status $rc: $(show_cmd "${CMD[@]}")"
    fi
    tail -1 "$RUN_DIR/time.out" | awk -v t0="$t0" -v t1="$t1" '{ printf "%.4f %d %s\n", t1 - t0, $2, $1 }'
}

# verify IMAGE TOOL SRC DATA_BYTES: DST equals SRC byte for byte and is sparse.
verify() {
    local image=$1 tool=$2 src=$3 data=$4
    local extra
    extra=$(find "$OUT" -mindepth 1 ! -path "$DST" -printf '%f ')
    [[ -z $extra ]] || die "$tool left extra files next to the destination: $extra"
    [[ -f $DST ]] || die "$tool did not create $DST"
    if [[ $image == 2g ]]; then
        cmp -- "$src" "$DST" >&2 || die "$image: $tool copy differs from the source (cmp)"
    else
        python3 "$LIB" sparse-cmp "$src" "$DST" >&2 ||
            die "$image: $tool copy differs from the source (sparse-cmp)"
    fi
    local used limit
    used=$(du --block-size=1 -- "$DST" | cut -f1)
    limit=$((data + SPARSE_SLACK_MIB * MIB))
    ((used <= limit)) || die "$image: $tool copy is not sparse: du $used bytes > data $data + slack $((SPARSE_SLACK_MIB * MIB))"
    log "  verified $tool on $image: identical, du $((used / MIB)) MiB for $((data / MIB)) MiB of data"
}

# fsync_calls TOOL SRC: how many fsync-family calls the tool makes (strace),
# in an extra untimed run. Prints a count, or "?" without strace.
fsync_calls() {
    command -v strace >/dev/null || { echo "?"; return; }
    rm -f -- "$DST"
    tool_cmd "$1" "$2" "$DST"
    strace -f -qq -o "$RUN_DIR/strace.out" -e trace=fsync,fdatasync,sync_file_range,syncfs,sync \
        "${CMD[@]}" >/dev/null 2>&1 || { echo "?"; return; }
    grep -cE '(fsync|fdatasync|sync_file_range|syncfs|sync)\(' "$RUN_DIR/strace.out" || true
}

TOOLS_2G=(rbdcp cp)
[[ -n $QEMU_IMG ]] && TOOLS_2G+=(qemu-img)
TOOLS_1T=(rbdcp cp)

# bench IMAGE SRC DATA_BYTES ROUNDS TOOLS...: warm-up + verify, then timed
# rounds alternating the tools. Appends to RESULTS.
bench() {
    local image=$1 src=$2 data=$3 rounds=$4 tool round r
    shift 4
    log "$image: warm-up (one untimed run per tool, then verify)"
    for tool in "$@"; do
        r=$(run_one "$image" "$tool" 0 "$src")
        log "  warm-up $tool: $r (wall s, peak RSS KiB, GNU time s)"
        verify "$image" "$tool" "$src" "$data"
    done
    for ((round = 1; round <= rounds; round++)); do
        for tool in "$@"; do
            r=$(run_one "$image" "$tool" "$round" "$src")
            log "$image round $round/$rounds $tool: $r (wall s, peak RSS KiB, GNU time s)"
            printf '%s\t%s\t%s\t%s\n' "$image" "$tool" "$round" "${r// /$'\t'}" >>"$RESULTS"
        done
    done
    rm -f -- "$DST"
}

log "rbdcp: $RBDCP"
bench 2g "$SRC2G" "$IMG2G_DATA" "$ROUNDS" "${TOOLS_2G[@]}"

# qemu-img on the 1 TiB image only if its warm-up finishes in time.
if [[ -n $QEMU_IMG ]]; then
    log "1t: trying qemu-img once (timeout ${QEMU_1T_TIMEOUT}s)"
    rc=0
    r=$(run_one 1t qemu-img 0 "$SRC1T" "$QEMU_1T_TIMEOUT") || rc=$?
    if ((rc == 0)); then
        TOOLS_1T+=(qemu-img)
    elif ((rc != 124)); then
        exit "$rc"   # run_one already said why
    else
        QEMU_NOTE="qemu-img left out of the 1 TiB table: one copy took longer than ${QEMU_1T_TIMEOUT}s (timeout)."
        log "$QEMU_NOTE"
    fi
fi
bench 1t "$SRC1T" "$IMG1T_DATA" "$ROUNDS_1T" "${TOOLS_1T[@]}"

log "fsync check (one extra untimed 2 GiB copy per tool under strace)"
declare -A FSYNCS
for tool in "${TOOLS_2G[@]}"; do
    FSYNCS[$tool]=$(fsync_calls "$tool" "$SRC2G")
    log "  $tool: ${FSYNCS[$tool]} fsync-family calls"
done
rm -f -- "$DST"

# --- report ------------------------------------------------------------------
ELAPSED=$(($(date +%s) - START_S))
RBDCP_VERSION=$("$RBDCP" --version 2>/dev/null | head -1) || true
[[ -n $RBDCP_VERSION ]] || RBDCP_VERSION="unknown (\`--version\` failed)"
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -z $(git -C "$ROOT" status --porcelain 2>/dev/null | head -1) ]] || GIT_REV+=" + uncommitted changes"
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
MEM_GIB=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
QEMU_VERSION=$([[ -n $QEMU_IMG ]] && "$QEMU_IMG" --version | head -1 || echo "not installed")
fsync_text() { case ${FSYNCS[$1]:-?} in 0) echo "no fsync" ;; \?) echo "fsync unknown" ;; *) echo "${FSYNCS[$1]} fsync-family calls" ;; esac; }

SECTION="$RUN_DIR/section.md"
{
    echo "## Local raw image copies (\`bench/local.sh\`)"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); whole run ${ELAPSED}s; load average at end $LOADAVG"
    echo "- Machine: $(nproc) CPUs ($CPU_MODEL), $MEM_GIB GiB RAM, kernel $(uname -r); bench dir \`$BENCH_DIR\` on $FSTYPE ($FSDEV)"
    echo "- rbdcp: $RBDCP_VERSION, \`$RBDCP\`, source $GIT_REV"
    echo "- Others: $("$CP" --version | head -1); $QEMU_VERSION"
    echo "- Images (python3 \`bench/benchlib.py make\`, fixed seeds, incompressible pseudo-random data in scattered 4 KiB-aligned extents of 64 KiB-4 MiB, rest holes):"
    echo "  2 GiB with 1 GiB of data in $EXT2G extents; 1 TiB with 100 MiB of data in $EXT1T extents."
    echo "- Method: one untimed warm-up copy per tool (then \`cmp\`/sparse compare with the source and a \`du\` check that the copy is sparse),"
    echo "  then timed rounds alternating the tools (rbdcp, cp, qemu-img, rbdcp, ...), each to a fresh destination (deleted, then \`sync\`, before every run)."
    echo "  Peak RSS from GNU time (\`%M\`); wall time from bash \`\$EPOCHREALTIME\` around the GNU time process (GNU time's \`%e\` has only 10 ms"
    echo "  resolution; this adds a few ms of fork/exec, the same for every tool). The source is in the page cache (it is read many times);"
    if [[ $SYNC_AFTER == 1 ]]; then
    echo "  every timed run ends with \`sync DST\` (an fsync of the destination), so each copy is timed until its data is durable;"
    echo "  whether the tool itself syncs:"
    else
    echo "  destinations are written to the page cache, and writeback is not timed unless the tool syncs itself:"
    fi
    echo "  rbdcp: $(fsync_text rbdcp); cp: $(fsync_text cp)$([[ -n $QEMU_IMG ]] && echo "; qemu-img: $(fsync_text qemu-img)") (strace, one extra 2 GiB copy)."
    echo "  MB/s = image data bytes (not apparent size) / median time, 1 MB = 10^6 bytes."
    [[ -z $QEMU_NOTE ]] || echo "- $QEMU_NOTE"
    echo
    echo "Commands, exactly as run (each preceded by \`rm -f DST; sync\` and wrapped as \`$GNU_TIME -f '%e %M' -o FILE COMMAND\`):"
    echo
    echo '```sh'
    for tool in "${TOOLS_2G[@]}"; do
        tool_cmd "$tool" "$SRC2G" "$DST"
        show_cmd "${CMD[@]}"; echo
    done
    for tool in "${TOOLS_1T[@]}"; do
        tool_cmd "$tool" "$SRC1T" "$DST"
        show_cmd "${CMD[@]}"; echo
    done
    echo '```'
    echo
    echo "### 2 GiB image, 1 GiB data, $ROUNDS rounds"
    echo
    python3 "$LIB" table 2g "$IMG2G_DATA" "$RESULTS"
    echo
    echo "### 1 TiB sparse image, 100 MiB data, $ROUNDS_1T rounds"
    echo
    python3 "$LIB" table 1t "$IMG1T_DATA" "$RESULTS"
    echo
    python3 "$LIB" verdict "$RESULTS" || true
    echo
    echo "Ratios are medians from one run on a shared machine; differences of a few percent are within noise (more rounds: \`ROUNDS=15 make bench\`)."
} >"$SECTION"
VERDICT_RC=0
python3 "$LIB" verdict "$RESULTS" >/dev/null || VERDICT_RC=$?

python3 "$LIB" splice "$BENCH_OUT" "$SECTION"
cat "$SECTION"
log "wrote $BENCH_OUT (local section) in ${ELAPSED}s"
if ((VERDICT_RC != 0)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
    exit 3
fi
