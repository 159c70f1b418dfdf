#!/usr/bin/env python3
"""Benchmark: RBD image copies, rbdcp against the stock tools, timed side by side
in one run against two local Ceph clusters, written to the `rbd` section of
BENCHMARKS.md (between <!-- rbd:begin --> and <!-- rbd:end -->).

Usage (normally via `make bench`):
    bash scripts/with-clusters.sh python3 bench/rbd.py

Scenarios (each tool into a fresh destination, removed after every run):
  a  full copy within cluster 1: rbdcp, rbd cp, rbd deep cp
  b  full copy from cluster 1 to cluster 2: rbdcp, rbd export | rbd import, qemu-img convert
  c  incremental s1..s2 from cluster 1 to cluster 2: rbdcp --from-snap, export-diff | import-diff
  d  cluster 2's own write ceiling: rados bench (once per round of b), against rbdcp's b throughput
  e  b, c and f again with every destination-side client using cluster 2's far.conf ("5 ms away")
  f  small incremental s2..s3 (4 MiB) from cluster 1 to cluster 2: rbdcp --from-snap, export-diff | import-diff

Environment:
  RBDCP_CONF1, RBDCP_CONF2  the two clusters' ceph.conf (required; scripts/with-clusters.sh sets them)
  RBDCP_FAR_CONF2     destination conf for e (default: far.conf next to RBDCP_CONF2)
  RBDCP               rbdcp binary (default <repo>/target/release/rbdcp; a private copy of it is used
                      for the whole run, so a concurrent rebuild cannot change it half-way)
  RBDCP_ARGS          extra arguments for every timed rbdcp run, e.g. "-j 32" or "--chunk-size 8M"
  ROUNDS              timed rounds per scenario (default 5, minimum 5)
  RBD_DATA_MIB        MiB of data in bsrc@s1 (default 256); the image is twice that, the s1..s2 change a quarter
  RADOS_MAX_OBJECTS   objects of 4 MiB per rados bench run (default: the copy's data, 64 for 256 MiB; see below)
  BENCH_ONLY          comma list of scenarios to run, e.g. "b,d" (default all; implies BENCH_OUT=-)
  BENCH_OUT           report file (default <repo>/BENCHMARKS.md); "-" prints the section instead
  BENCH_DIR           work dir for the generated source and diff files (default /var/tmp/rbdcp-bench)
  BENCH_INSTALL_QEMU  1 (default): when qemu-img lacks the rbd driver and we are root, install
                      Debian 12's qemu-utils + qemu-block-extra 7.2 (this downgrades qemu-utils);
                      0: leave qemu-img out instead
  RUN_TIMEOUT         seconds one run may take before it counts as failed (default 300)
  BENCH_STRICT=1      exit 3 when a target is missed (default: report only)

rados bench is capped with --max-objects: the plain 10-second run writes 5-8 GiB at the speeds
seen here, which a memstore OSD keeps in RAM at about twice that (and its device is 8 GiB).

Correctness failures (a copy differs from its source, a tool fails) exit non-zero and leave
BENCH_OUT untouched. Images made here are removed at the end, also after a failure.
Stdlib only.
"""

import datetime
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import splice_section  # noqa: E402  (bench/ is not a package)

KIB = 1024
MIB = 1024 * KIB
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

POOL = "rbd"
SRC, DST, INC = "bsrc", "bdst", "binc"
DATA_BYTES = int(os.environ.get("RBD_DATA_MIB") or 256) * MIB   # data of bsrc@s1, in scattered extents
IMAGE_SIZE = 2 * DATA_BYTES
EXT_MIN, EXT_MAX = 64 * KIB, 4 * MIB
CHANGE_BYTES = DATA_BYTES // 4  # s1..s2: records of REC_MIN..REC_MAX
SMALL_BYTES = 4 * MIB           # s2..s3: records of REC_MIN..REC_MAX (issue 12, point 4)
REC_MIN, REC_MAX = 4 * KIB, 1 * MIB
ZERO_RECORDS = 2                # of the change records, this many become 'z' (zeroed) records
ALIGN = 4 * KIB
SEED = 20261126
BEGIN, END = "<!-- rbd:begin -->", "<!-- rbd:end -->"
REF = "rbdcp"
# targets
PIPE_FACTOR = 3.0
SMALL_FACTOR = 1.5              # the small incremental copy, pipe / rbdcp (issue 12, point 4: the target)
CPU_FACTOR = 1.1                # client CPU per GiB, rbdcp against the lowest peer (issue 12, point 5)
CEILING_SHARE = 0.80

T_START = time.monotonic()


def log(msg):
    print(f"[bench/rbd {time.monotonic() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


def die(msg):
    raise Fail(msg)


def show(argv):
    return shlex.join(argv)


def show_pipeline(argvs):
    return " | ".join(show(a) for a in argvs)


def run(argv, timeout=120, check=True, stdin_data=None):
    """Runs a command, returns (rc, stdout, stderr) as text."""
    try:
        p = subprocess.run(argv, input=stdin_data, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        die(f"timed out after {timeout} s: {show(argv)}")
    except FileNotFoundError:
        die(f"not found: {argv[0]}")
    if check and p.returncode != 0:
        die(f"exit {p.returncode}: {show(argv)}\n{p.stderr.strip()}")
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------- configuration

def env_int(name, default, minimum):
    raw = os.environ.get(name, str(default))
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < minimum:
        die(f"{name} must be an integer >= {minimum} (got '{raw}')")
    return int(raw)


class Cfg:
    pass


def configure():
    c = Cfg()
    c.conf1 = os.environ.get("RBDCP_CONF1", "")
    c.conf2 = os.environ.get("RBDCP_CONF2", "")
    if not c.conf1 or not c.conf2:
        die("RBDCP_CONF1 and RBDCP_CONF2 are not set. They name the two clusters' ceph.conf files; "
            "start the clusters and run this with: bash scripts/with-clusters.sh python3 bench/rbd.py")
    for name, path in (("RBDCP_CONF1", c.conf1), ("RBDCP_CONF2", c.conf2)):
        if not os.path.isfile(path):
            die(f"{name}={path}: no such file")
    c.conf1, c.conf2 = os.path.abspath(c.conf1), os.path.abspath(c.conf2)
    if c.conf1 == c.conf2:
        die("RBDCP_CONF1 and RBDCP_CONF2 name the same file; two clusters are needed")
    c.far2 = os.path.abspath(os.environ.get("RBDCP_FAR_CONF2") or
                             os.path.join(os.path.dirname(c.conf2), "far.conf"))
    if not os.path.isfile(c.far2):
        die(f"{c.far2} missing (cluster 2's conf with ms_inject_delay_*, written by scripts/ceph-local.sh); "
            "set RBDCP_FAR_CONF2")
    c.rounds = env_int("ROUNDS", 5, 5)
    c.rados_objects = env_int("RADOS_MAX_OBJECTS", DATA_BYTES // (4 * MIB), 1)
    c.timeout = env_int("RUN_TIMEOUT", 300, 10)
    c.strict = os.environ.get("BENCH_STRICT") == "1"
    c.rbdcp_args = shlex.split(os.environ.get("RBDCP_ARGS", ""))
    only = os.environ.get("BENCH_ONLY", "").strip()
    c.only = set(x.strip() for x in only.split(",") if x.strip()) if only else set("abcdef")
    if not c.only <= set("abcdef"):
        die(f"BENCH_ONLY: unknown scenario(s) {sorted(c.only - set('abcdef'))}; use a,b,c,d,e,f")
    default_out = os.path.join(REPO, "BENCHMARKS.md") if not only else "-"
    c.out = os.environ.get("BENCH_OUT", default_out)
    c.bench_dir = os.environ.get("BENCH_DIR", "/var/tmp/rbdcp-bench")
    c.install_qemu = os.environ.get("BENCH_INSTALL_QEMU", "1") != "0"
    rbdcp = os.environ.get("RBDCP", os.path.join(REPO, "target", "release", "rbdcp"))
    if not (os.path.isfile(rbdcp) and os.access(rbdcp, os.X_OK)):
        die(f"rbdcp binary not found at {rbdcp} (cargo build --release, or set RBDCP=)")
    c.rbdcp_orig = os.path.abspath(rbdcp)
    for tool in ("rbd", "rados", "ceph"):
        if not shutil.which(tool):
            die(f"{tool} not found (bash scripts/ceph-local.sh install)")
    return c


def qemu_has_rbd():
    exe = shutil.which("qemu-img")
    if not exe:
        return False
    rc, out, _ = run([exe, "--help"], check=False, timeout=30)
    m = re.search(r"Supported formats:(.*)", out)
    return bool(m and re.search(r"\brbd\b", m.group(1)))


def ensure_qemu(c):
    """Returns (qemu-img path or None, note for the report)."""
    if qemu_has_rbd():
        return shutil.which("qemu-img"), ""
    if not c.install_qemu:
        return None, "qemu-img left out: it has no rbd driver (BENCH_INSTALL_QEMU=0)."
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, ("qemu-img left out: it has no rbd driver, and installing qemu-block-extra needs root "
                      "and apt-get.")

    def candidate():
        _, out, _ = run(["apt-cache", "policy", "qemu-block-extra"], check=False)
        m = re.search(r"Candidate:\s*(\S+)", out)
        return m.group(1) if m and m.group(1) != "(none)" else None

    ver = candidate()
    if not ver:
        log("apt-get update (looking for qemu-block-extra)")
        run(["apt-get", "update", "-q"], timeout=600, check=False)
        ver = candidate()
    if not ver:
        return None, "qemu-img left out: no rbd driver, and apt knows no qemu-block-extra."
    # qemu-block-extra depends on the qemu-utils of its own version; the machine may carry a newer
    # qemu-utils (backports) built without rbd, so both are pinned and the downgrade allowed.
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-downgrades",
            f"qemu-utils={ver}", f"qemu-block-extra={ver}"]
    log("installing qemu-img's rbd driver: " + show(argv))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0 or not qemu_has_rbd():
        return None, f"qemu-img left out: `{show(argv)}` failed: {p.stderr.strip()[-300:]}"
    return shutil.which("qemu-img"), (f"qemu-img had no rbd driver; this run installed it with `{show(argv)}` "
                                      "(Debian 12's qemu-block-extra needs the qemu-utils of its own version, "
                                      "so this replaced the newer qemu-utils from backports).")


# ---------------------------------------------------------------- rbd helpers

def rbd(conf, *args):
    return ["rbd", "-c", conf, *args]


def loc(image, conf, snap=None):
    """An rbd: location for rbdcp and qemu-img."""
    esc = conf.replace("\\", "\\\\").replace(":", "\\:")
    return f"rbd:{POOL}/{image}{'@' + snap if snap else ''}:conf={esc}"


def remove_image(conf, image):
    """snap purge + rm; quiet when the image does not exist. Retries while watchers linger."""
    spec = f"{POOL}/{image}"
    rc, _, err = run(rbd(conf, "snap", "purge", "--no-progress", spec), check=False)
    if rc != 0:
        if "No such file" in err or "not found" in err.lower():
            return
        die(f"rbd snap purge {spec} failed: {err.strip()}")
    for attempt in range(40):
        rc, _, err = run(rbd(conf, "rm", "--no-progress", spec), check=False)
        if rc == 0 or "No such file" in err:
            return
        if "watchers" not in err and "busy" not in err.lower():
            break
        time.sleep(0.25)
    die(f"rbd rm {spec} failed: {err.strip()}")


def export_hash(conf, spec):
    """sha256 of `rbd export SPEC -`, and the byte count."""
    argv = rbd(conf, "export", "--no-progress", f"{POOL}/{spec}", "-")
    h = hashlib.sha256()
    n = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        while True:
            b = p.stdout.read(4 * MIB)
            if not b:
                break
            h.update(b)
            n += len(b)
        err = p.stderr.read().decode(errors="replace")
        rc = p.wait()
    if rc != 0:
        die(f"exit {rc}: {show(argv)}\n{err.strip()}")
    return h.hexdigest(), n


def check_copy(conf, spec, want, what):
    got, n = export_hash(conf, spec)
    if got != want[0] or n != want[1]:
        die(f"MISMATCH: {what}: `rbd export {POOL}/{spec}` gives sha256 {got[:16]}... over {n} bytes, "
            f"the source gives {want[0][:16]}... over {want[1]} bytes")
    log(f"  check ok: {what} (sha256 {got[:12]}, {n} bytes)")


# ---------------------------------------------------------------- source data

def plan(rng, total, span, lo, hi):
    """Sorted, non-overlapping, ALIGN-aligned (offset, length) extents of lo..hi bytes summing to total,
    scattered over [0, span) with random gaps."""
    lengths, left = [], total
    while left > 0:
        n = min(rng.randrange(lo // ALIGN, hi // ALIGN + 1) * ALIGN, left)
        lengths.append(n)
        left -= n
    free = (span - total) // ALIGN
    w = [rng.random() for _ in range(len(lengths) + 1)]
    s = sum(w)
    gaps = [int(free * x / s) for x in w]
    gaps[-1] += free - sum(gaps)
    out, off = [], 0
    for g, n in zip(gaps, lengths):
        off += g * ALIGN
        out.append((off, n))
        off += n
    return out


def overlap(a, b):
    """Bytes of extent list b that fall inside the single extent a."""
    o, n = a
    return sum(max(0, min(o + n, bo + bn) - max(o, bo)) for bo, bn in b)


class Source:
    pass


def make_source(c, work):
    """Creates rbd/bsrc on cluster 1 with snapshots s1 and s2; returns expected hashes and sizes."""
    rng = random.Random(SEED)
    img = bytearray(IMAGE_SIZE)
    extents = plan(rng, DATA_BYTES, IMAGE_SIZE, EXT_MIN, EXT_MAX)
    path = os.path.join(work, "bsrc.img")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, IMAGE_SIZE)
        for off, n in extents:
            b = rng.randbytes(n)
            img[off:off + n] = b
            os.pwrite(fd, b, off)
    finally:
        os.close(fd)
    s = Source()
    s.extents = extents
    s.h1 = (hashlib.sha256(img).hexdigest(), IMAGE_SIZE)

    # s1..s2: records of 4 KiB..1 MiB; the ZERO_RECORDS records that overlap s1's data most become 'z'.
    recs = plan(rng, CHANGE_BYTES, IMAGE_SIZE, REC_MIN, REC_MAX)
    zero_idx = set(sorted(range(len(recs)), key=lambda i: -overlap(recs[i], extents))[:ZERO_RECORDS])
    diff = os.path.join(work, "s1-s2.diff")
    with open(diff, "wb") as f:
        f.write(b"rbd diff v1\n")
        for tag, name in ((b"f", b"s1"), (b"t", b"s2")):
            f.write(tag + struct.pack("<I", len(name)) + name)
        f.write(b"s" + struct.pack("<Q", IMAGE_SIZE))
        for i, (off, n) in enumerate(recs):
            if i in zero_idx:
                f.write(b"z" + struct.pack("<QQ", off, n))
                img[off:off + n] = bytes(n)
            else:
                b = rng.randbytes(n)
                f.write(b"w" + struct.pack("<QQ", off, n) + b)
                img[off:off + n] = b
        f.write(b"e")
    s.h2 = (hashlib.sha256(img).hexdigest(), IMAGE_SIZE)
    # s2..s3: a small change, SMALL_BYTES in records of 4 KiB..1 MiB (the hourly backup's case).
    small = plan(rng, SMALL_BYTES, IMAGE_SIZE, REC_MIN, REC_MAX)
    diff3 = os.path.join(work, "s2-s3.diff")
    with open(diff3, "wb") as f:
        f.write(b"rbd diff v1\n")
        for tag, name in ((b"f", b"s2"), (b"t", b"s3")):
            f.write(tag + struct.pack("<I", len(name)) + name)
        f.write(b"s" + struct.pack("<Q", IMAGE_SIZE))
        for off, n in small:
            b = rng.randbytes(n)
            f.write(b"w" + struct.pack("<QQ", off, n) + b)
            img[off:off + n] = b
        f.write(b"e")
    s.h3 = (hashlib.sha256(img).hexdigest(), IMAGE_SIZE)
    s.small_records = len(small)
    del img
    s.records = len(recs)
    s.zero_records = [recs[i] for i in sorted(zero_idx)]
    s.zero_bytes = sum(n for _, n in s.zero_records)
    s.zero_over_data = sum(overlap(r, extents) for r in s.zero_records)
    s.write_bytes = CHANGE_BYTES - s.zero_bytes
    s.diff_file_bytes = os.path.getsize(diff)

    log(f"source: {len(extents)} extents, {DATA_BYTES // MIB} MiB of data in a {IMAGE_SIZE // MIB} MiB image; "
        f"s1..s2: {len(recs)} records, {s.write_bytes / MIB:.1f} MiB written + {s.zero_bytes / MIB:.2f} MiB zeroed")
    run(rbd(c.conf1, "import", "--no-progress", path, f"{POOL}/{SRC}"), timeout=300)
    os.unlink(path)
    run(rbd(c.conf1, "snap", "create", "--no-progress", f"{POOL}/{SRC}@s1"))
    run(rbd(c.conf1, "import-diff", "--no-progress", diff, f"{POOL}/{SRC}"), timeout=300)  # creates s2
    os.unlink(diff)
    run(rbd(c.conf1, "import-diff", "--no-progress", diff3, f"{POOL}/{SRC}"), timeout=300)  # creates s3
    os.unlink(diff3)
    _, out, _ = run(rbd(c.conf1, "snap", "ls", f"{POOL}/{SRC}"))
    snaps = re.findall(r"^\s*\d+\s+(\S+)\s", out, re.M)
    if snaps != ["s1", "s2", "s3"]:
        die(f"{POOL}/{SRC} has snapshots {snaps}, expected s1, s2, s3:\n{out}")
    check_copy(c.conf1, f"{SRC}@s1", s.h1, "source bsrc@s1 equals the generated image")
    check_copy(c.conf1, f"{SRC}@s2", s.h2, "source bsrc@s2 equals the generated image + diff")
    check_copy(c.conf1, f"{SRC}@s3", s.h3, "source bsrc@s3 equals s2 + the small diff")
    # What librbd reports, i.e. what every tool has to read: each object from its offset 0 to its
    # last written byte, so this exceeds the data written.
    s.alloc_s1 = diff_bytes(c.conf1, f"{POOL}/{SRC}@s1")
    s.alloc_s12 = diff_bytes(c.conf1, f"{POOL}/{SRC}@s2", "s1")
    _, out, _ = run(rbd(c.conf1, "info", f"{POOL}/{SRC}"))
    m = re.search(r"order (\d+)", out)
    s.order = int(m.group(1)) if m else 22
    m = re.search(r"features: (.*)", out)
    s.features = m.group(1).strip() if m else "?"
    return s


def diff_bytes(conf, spec, from_snap=None):
    argv = rbd(conf, "diff", "--format", "json", *(["--from-snap", from_snap] if from_snap else []), spec)
    return sum(e["length"] for e in json.loads(run(argv)[1]))


# ---------------------------------------------------------------- timing

def daemon_pids(conf):
    """{'osd.0': pid, 'mon.a': pid} from the cluster dir's pids file (scripts/ceph-local.sh), checked."""
    out = {}
    try:
        with open(os.path.join(os.path.dirname(conf), "pids")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    out[parts[0]] = int(parts[1])
    except OSError:
        return {}
    good = {}
    for name, pid in out.items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if conf.encode() in f.read().split(b"\0"):
                    good[name] = pid
        except OSError:
            pass
    return good


CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def health(c):
    """One line per cluster from `ceph health`, for failure messages (a memstore OSD can wrongly
    report itself full, which makes every write hang until RUN_TIMEOUT)."""
    out = []
    for name, conf in (("cluster 1", c.conf1), ("cluster 2", c.conf2)):
        rc, o, e = run(["timeout", "20", "ceph", "-c", conf, "--connect-timeout", "10", "health"], check=False,
                       timeout=30)
        out.append(f"{name}: {(o or e).strip() or f'ceph health exit {rc}'}")
    return "; ".join(out)


def writable(c, conf, wait=120):
    """Waits (at most `wait` s) until `ceph health` of `conf`'s cluster names nothing full."""
    t0 = time.time()
    while True:
        rc, o, e = run(["timeout", "20", "ceph", "-c", conf, "--connect-timeout", "10", "health", "detail"],
                       check=False, timeout=30)
        text = (o or e).lower()
        if rc == 0 and "full" not in text:
            log(f"  {conf}: writable after {time.time() - t0:.0f} s ({text.splitlines()[0] if text else ''})")
            return
        if time.time() - t0 > wait:
            die(f"{conf}: still full after {wait} s: {text.strip()}")
        time.sleep(2)


class Timer:
    def __init__(self, c):
        self.c = c
        self.osds = [p for conf in (c.conf1, c.conf2) for n, p in daemon_pids(conf).items() if n.startswith("osd")]

    def osd_cpu(self):
        return sum(proc_cpu(p) for p in self.osds)

    def run(self, argvs, what, fatal=True):
        """Runs a pipeline; returns (wall seconds, client CPU seconds, OSD CPU seconds), or None
        when it failed and not `fatal`."""
        errf = tempfile.TemporaryFile()
        procs = []
        pgid = None
        # Each process runs under GNU time for its peak RSS: the kernel's count for a child
        # forked from this (large) Python process starts at Python's own. Its CPU, from
        # wait4 below, includes the tool's (time waits for it).
        notes = []
        for _ in argvs:
            fd, note = tempfile.mkstemp(prefix="rbdcp-bench-time.")
            os.close(fd)
            notes.append(note)
        timed_argvs = [["/usr/bin/time", "-f", "%M", "-o", note] + argv for note, argv in zip(notes, argvs)]
        cpu0 = self.osd_cpu()
        t0 = time.perf_counter()
        prev = None
        try:
            for i, argv in enumerate(timed_argvs):
                last = i == len(argvs) - 1
                kw = {"process_group": 0 if pgid is None else pgid}   # one new process group per run
                p = subprocess.Popen(argv, stdin=prev.stdout if prev else subprocess.DEVNULL,
                                     stdout=errf if last else subprocess.PIPE, stderr=errf, **kw)
                if pgid is None:
                    pgid = p.pid
                if prev:
                    prev.stdout.close()
                procs.append(p)
                prev = p
        except OSError as e:
            for p in procs:
                p.kill()
            die(f"{what}: cannot start {show_pipeline(argvs)}: {e}")
        expired = threading.Event()

        def kill():
            expired.set()
            # Before killing a hung run, keep its threads' stacks and the clusters' health for the report.
            errf.seek(0, os.SEEK_END)
            for p in procs:
                if shutil.which("gdb") and p.poll() is None:
                    g = subprocess.run(["timeout", "60", "gdb", "-batch", "-p", str(p.pid), "-ex",
                                        "thread apply all bt 12"], capture_output=True, text=True)
                    errf.write(f"\n--- stacks of {p.args[0]} (pid {p.pid}) ---\n{g.stdout[-20000:]}".encode())
            errf.write(f"\n(health at the time-out: {health(self.c)})\n".encode())
            errf.flush()
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(self.c.timeout, kill)
        timer.start()
        cpu = 0.0
        rcs = []
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            rcs.append(p.returncode)
            cpu += ru.ru_utime + ru.ru_stime
        self.rss = 0.0      # MiB: the largest peak resident set of the run's processes
        for note in notes:
            with open(note) as f:
                words = f.read().split()
            os.unlink(note)
            if words and words[-1].isdigit():
                self.rss = max(self.rss, int(words[-1]) / KIB)
        t1 = time.perf_counter()
        timer.cancel()
        osd = self.osd_cpu() - cpu0
        if expired.is_set() or any(rcs):
            errf.seek(0)
            err = errf.read().decode(errors="replace").strip()[-25000:]
            why = f"timed out after {self.c.timeout} s" if expired.is_set() else f"exit status {rcs}"
            if not fatal and not expired.is_set():
                log(f"{what}: {why}: {err[-2000:]}")
                return None
            die(f"{what}: {why}: {show_pipeline(argvs)}\n{err}")
        errf.close()
        return t1 - t0, cpu, osd


# ---------------------------------------------------------------- scenarios

class Scenario:
    def __init__(self, key, title, data_bytes, dst_conf, dst, tools, check, prepare=None):
        self.key, self.title, self.data_bytes = key, title, data_bytes
        self.dst_conf, self.dst, self.tools, self.check, self.prepare = dst_conf, dst, tools, check, prepare
        self.runs = {name: [] for name, _ in tools}    # name -> [(wall, cpu, osd)]
        self.rss = {name: [] for name, _ in tools}     # name -> [peak RSS MiB of the largest process]
        self.rados = []                                 # MiB/s per round (only where rados bench rides along)
        self.rados_cmd = None


def scenarios(c, s, qemu):
    C1, C2, FAR = c.conf1, c.conf2, c.far2
    R = [c.rbdcp_copy]
    out = []
    if "a" in c.only:
        out.append(Scenario("a", "Full copy within cluster 1 (bsrc@s1)", DATA_BYTES, C1, DST, [
            ("rbdcp", [R + ["copy", loc(SRC, C1, "s1"), loc(DST, C1), "--no-progress", "--no-dst-snap",
                            *c.rbdcp_args]]),
            ("rbd cp", [rbd(C1, "cp", "--no-progress", f"{POOL}/{SRC}@s1", f"{POOL}/{DST}")]),
            ("rbd deep cp", [rbd(C1, "deep", "cp", "--no-progress", f"{POOL}/{SRC}@s1", f"{POOL}/{DST}")]),
        ], (DST, s.h1)))
    for key, dconf, label in (("b", C2, "cluster 1 to cluster 2"),
                              ("e-b", FAR, "cluster 1 to cluster 2, destination 5 ms away (far.conf)")):
        if key[0] not in c.only:
            continue
        tools = [
            ("rbdcp", [R + ["copy", loc(SRC, C1, "s1"), loc(DST, dconf), "--no-progress", "--no-dst-snap",
                            *c.rbdcp_args]]),
            ("rbd export | rbd import", [rbd(C1, "export", "--no-progress", f"{POOL}/{SRC}@s1", "-"),
                                         rbd(dconf, "import", "--no-progress", "-", f"{POOL}/{DST}")]),
        ]
        if qemu:
            tools.append(("qemu-img convert", [[qemu, "convert", "-m", "16", "-W", "-f", "raw", "-O", "raw",
                                                loc(SRC, C1, "s1"), loc(DST, dconf)]]))
        sc = Scenario(key, f"Full copy, {label} (bsrc@s1)", DATA_BYTES, C2, DST, tools, (DST, s.h1))
        if "d" in c.only:
            sc.rados_cmd = ["rados", "-c", dconf, "-p", POOL, "bench", "10", "write", "-t", "16",
                            "-b", "4194304", "--max-objects", str(c.rados_objects), "--no-cleanup"]
        out.append(sc)
    for key, dconf, label in (("c", C2, "cluster 1 to cluster 2"),
                              ("e-c", FAR, "cluster 1 to cluster 2, destination 5 ms away (far.conf)")):
        if key[0] not in c.only:
            continue
        # untimed, before every run: cluster 2 gets binc holding s1 (rbdcp creates the snapshot)
        prep = R + ["copy", loc(SRC, C1, "s1"), loc(INC, C2), "--no-progress"]
        out.append(Scenario(key, f"Incremental s1..s2, {label}", CHANGE_BYTES, C2, INC, [
            ("rbdcp", [R + ["copy", loc(SRC, C1, "s2"), loc(INC, dconf), "--from-snap", "s1", "--no-progress",
                            *c.rbdcp_args]]),
            ("rbd export-diff | rbd import-diff", [
                rbd(C1, "export-diff", "--no-progress", "--from-snap", "s1", f"{POOL}/{SRC}@s2", "-"),
                rbd(dconf, "import-diff", "--no-progress", "-", f"{POOL}/{INC}")]),
        ], (f"{INC}@s2", s.h2), prepare=prep))
    for key, dconf, label in (("f", C2, "cluster 1 to cluster 2"),
                              ("e-f", FAR, "cluster 1 to cluster 2, destination 5 ms away (far.conf)")):
        if key[0] not in c.only:
            continue
        # untimed, before every run: cluster 2 gets binc holding s2 (rbdcp creates the snapshot)
        prep = R + ["copy", loc(SRC, C1, "s2"), loc(INC, C2), "--no-progress"]
        out.append(Scenario(key, f"Small incremental s2..s3 ({SMALL_BYTES // MIB} MiB), {label}", SMALL_BYTES,
                            C2, INC, [
            ("rbdcp", [R + ["copy", loc(SRC, C1, "s3"), loc(INC, dconf), "--from-snap", "s2", "--no-progress",
                            *c.rbdcp_args]]),
            ("rbd export-diff | rbd import-diff", [
                rbd(C1, "export-diff", "--no-progress", "--from-snap", "s2", f"{POOL}/{SRC}@s3", "-"),
                rbd(dconf, "import-diff", "--no-progress", "-", f"{POOL}/{INC}")]),
        ], (f"{INC}@s3", s.h3), prepare=prep))
    return out


def rados_bench_mibs(c, sc):
    conf = sc.rados_cmd[2]
    argv = sc.rados_cmd + ["--run-name", "rbdbench"]
    try:
        _, out, _ = run(argv, timeout=c.timeout)
    finally:
        run(["rados", "-c", conf, "-p", POOL, "cleanup", "--run-name", "rbdbench"], check=False, timeout=300)
    m = re.search(r"^Bandwidth \(MB/sec\):\s*([0-9.]+)", out, re.M)
    if not m:
        die(f"no 'Bandwidth (MB/sec)' line in the output of {show(argv)}:\n{out[-1500:]}")
    return float(m.group(1))   # rados bench's "MB" is 2^20 bytes (bytes / 1048576 / seconds)


def run_scenario(c, sc, timer):
    names = [n for n, _ in sc.tools]
    log(f"scenario {sc.key}: {sc.title}")
    cleanup_conf = c.conf1 if sc.dst_conf == c.conf1 else c.conf2
    remove_image(cleanup_conf, sc.dst)
    for rnd in range(0, c.rounds + 1):          # round 0: warm-up, untimed, checks the result
        k = rnd % len(names)
        order = names[k:] + names[:k]           # rotate, so no tool always runs first
        for name in order:
            argvs = dict(sc.tools)[name]
            if sc.prepare and timer.run([sc.prepare], f"{sc.key} prepare", fatal=False) is None:
                # Twice the full copy behind an incremental scenario met a memstore OSD that
                # called itself full after the scenarios before (ENOSPC, "pool full"): space
                # that removed images free comes back as the OSD trims their snapshots.
                writable(c, cleanup_conf)
                timer.run([sc.prepare], f"{sc.key} prepare")
            wall, cpu, osd = timer.run(argvs, f"{sc.key} {name} {'warm-up' if rnd == 0 else f'round {rnd}'}")
            if rnd == 0:
                log(f"  warm-up {name}: {wall:.3f} s")
                check_copy(cleanup_conf, sc.check[0], sc.check[1], f"{sc.key}: {name}")
            else:
                sc.runs[name].append((wall, cpu, osd))
                sc.rss[name].append(timer.rss)
                log(f"  round {rnd} {name}: {wall:.3f} s (client CPU {cpu:.2f} s, OSDs {osd:.2f} s)")
            remove_image(cleanup_conf, sc.dst)
            time.sleep(0.3)                     # let the OSDs settle (deletes, snap trims)
        if sc.rados_cmd:
            mibs = rados_bench_mibs(c, sc)
            if rnd > 0:
                sc.rados.append(mibs)
            log(f"  {'warm-up' if rnd == 0 else f'round {rnd}'} rados bench: {mibs:.0f} MiB/s")
            time.sleep(0.3)


# ---------------------------------------------------------------- report

def med(xs):
    return statistics.median(xs)


def f3(x):
    return f"{x:.3f}"


def cell(text):
    return text.replace("|", "\\|")


def cpu_per_gib(sc, name):
    """The median client CPU seconds per GiB of the scenario's data."""
    return med([x for _, x, _ in sc.runs[name]]) / (sc.data_bytes / 2**30)


def table(sc):
    ref = med([w for w, _, _ in sc.runs[REF]])
    rows = ["| tool | runs | median s | min s | max s | MiB/s of source data (median) | time ratio (tool median / rbdcp median) | client CPU s (median) | client CPU s per GiB (median) | peak RSS MiB (largest process, median) | OSD CPU s (median) | cores busy (client + OSD CPU / wall, median) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _ in sc.tools:
        ws = [w for w, _, _ in sc.runs[name]]
        m = med(ws)
        rows.append(f"| {cell(name)} | {len(ws)} | {f3(m)} | {f3(min(ws))} | {f3(max(ws))} | "
                    f"{sc.data_bytes / MIB / m:.0f} | {m / ref:.2f} | "
                    f"{med([x for _, x, _ in sc.runs[name]]):.2f} | {cpu_per_gib(sc, name):.2f} | "
                    f"{med(sc.rss[name]):.0f} | {med([x for _, _, x in sc.runs[name]]):.2f} | "
                    f"{med([(x + y) / w for w, x, y in sc.runs[name]]):.2f} |")
    raw = "; ".join(f"{name}: " + " ".join(f"{w:.3f}" for w, _, _ in sc.runs[name]) for name, _ in sc.tools)
    return "\n".join(rows) + f"\n\nEach run in seconds, in round order: {raw}."


def tool_median(sc, name):
    return med([w for w, _, _ in sc.runs[name]])


def verdicts(c, scs):
    by = {sc.key: sc for sc in scs}
    lines, ok = [], True

    def add(held, text):
        nonlocal ok
        ok = ok and held
        lines.append(f"- **{'holds' if held else 'MISSED'}**: {text}")

    if "a" in by:
        sc = by["a"]
        r, t = tool_median(sc, REF), tool_median(sc, "rbd cp")
        add(t > r, f"rbdcp faster than `rbd cp` within a cluster: rbdcp {r:.3f} s, rbd cp {t:.3f} s, "
                   f"ratio {t / r:.2f} (need > 1.00). `rbd deep cp`: {tool_median(sc, 'rbd deep cp'):.3f} s, "
                   f"ratio {tool_median(sc, 'rbd deep cp') / r:.2f} (no target).")
    for key, pipe in (("b", "rbd export | rbd import"), ("c", "rbd export-diff | rbd import-diff"),
                      ("e-b", "rbd export | rbd import"), ("e-c", "rbd export-diff | rbd import-diff")):
        if key not in by:
            continue
        sc = by[key]
        r, t = tool_median(sc, REF), tool_median(sc, pipe)
        where = "5 ms away" if key.startswith("e") else "across clusters"
        add(t / r >= PIPE_FACTOR, f"rbdcp at least {PIPE_FACTOR:.0f}x faster than `{pipe}` {where} "
                                  f"({sc.key}): rbdcp {r:.3f} s, pipe {t:.3f} s, ratio {t / r:.2f} "
                                  f"(need >= {PIPE_FACTOR:.2f}).")
        if "qemu-img convert" in sc.runs:
            q = tool_median(sc, "qemu-img convert")
            lines.append(f"- (no target) qemu-img convert {where} ({sc.key}): {q:.3f} s, ratio {q / r:.2f}.")
    for key, where in (("f", "across clusters"), ("e-f", "5 ms away")):
        if key not in by:
            continue
        sc = by[key]
        pipe = "rbd export-diff | rbd import-diff"
        r, t = tool_median(sc, REF), tool_median(sc, pipe)
        add(t > r, f"a {SMALL_BYTES // MIB} MiB incremental copy {where} ({key}) beats `{pipe}`: rbdcp {r:.3f} s, "
                   f"pipe {t:.3f} s, ratio {t / r:.2f} (need > 1.00; the target is {SMALL_FACTOR:.1f}: "
                   f"{'met' if t / r >= SMALL_FACTOR else 'not met'}).")
    for sc in scs:
        peers = [name for name, _ in sc.tools if name != REF]
        if not peers:
            continue
        low = min(peers, key=lambda n: cpu_per_gib(sc, n))
        r, p = cpu_per_gib(sc, REF), cpu_per_gib(sc, low)
        add(r <= CPU_FACTOR * p, f"client CPU per GiB ({sc.key}): rbdcp {r:.2f} s, the lowest peer `{low}` "
                                 f"{p:.2f} s, ratio {r / p:.2f} (need <= {CPU_FACTOR:.2f}).")
    for key, held_needed in (("b", True), ("e-b", False)):
        if key not in by or not by[key].rados:
            continue
        sc = by[key]
        bw = med(sc.rados)
        thr = sc.data_bytes / MIB / tool_median(sc, REF)
        text = (f"rbdcp's cross-cluster throughput {thr:.0f} MiB/s (256 MiB of data / median {tool_median(sc, REF):.3f} s) "
                f"is {thr / bw * 100:.0f}% of `rados bench` write bandwidth {bw:.0f} MiB/s (median of {len(sc.rados)})")
        if held_needed:
            add(thr >= CEILING_SHARE * bw, text + f" (need >= {CEILING_SHARE * 100:.0f}%).")
        else:
            lines.append(f"- (no target) 5 ms away: {text}.")
    return lines, ok


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else "?"
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        m = re.search(r"MemTotal:\s*(\d+) kB", f.read())
        mem = int(m.group(1)) * KIB if m else 0
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / 2**30:.1f} GiB RAM, kernel {os.uname().release}"


def git_rev(binary):
    """The work tree's state, and whether the binary predates HEAD's commit."""
    rc, out, _ = run(["git", "-C", REPO, "describe", "--always", "--dirty= + uncommitted changes"],
                     check=False, timeout=30)
    if rc != 0:
        return "?"
    text = f"work tree at {out.strip()}"
    rc, out, _ = run(["git", "-C", REPO, "log", "-1", "--format=%ct"], check=False, timeout=30)
    if rc == 0 and out.strip().isdigit() and int(out.strip()) > os.path.getmtime(binary):
        when = datetime.datetime.fromtimestamp(int(out.strip()), datetime.timezone.utc).strftime("%H:%M UTC")
        text += f" (HEAD was committed at {when}, after the binary was built: the binary may lack its changes)"
    return text


def write_report(c, info, scs, verdict_lines):
    cmds = []
    for sc in scs:
        cmds.append(f"# {sc.key}: {sc.title}")
        if sc.prepare:
            cmds.append("# untimed, before each run: " + show(sc.prepare))
        for name, argvs in sc.tools:
            cmds.append(show_pipeline(argvs))
        if sc.rados_cmd:
            cmds.append("# once per round, right after the copies; then: rados -c CONF -p rbd cleanup --run-name rbdbench")
            cmds.append(show(sc.rados_cmd + ["--run-name", "rbdbench"]))
    s = info.source
    L = [
        "## RBD image copies (`bench/rbd.py`)",
        "",
        f"- Date: {info.date}; whole run {info.elapsed:.0f} s; load average at start {info.load0}, at end {info.load1}",
        f"- Machine: {machine()}; other processes share it (other engineers' clusters and builds), so only "
        "ratios from this one run mean anything",
        f"- Ceph: {info.ceph_version}; two throw-away single-node clusters (1 mon + 1 memstore OSD each, "
        "size 1, on loopback) from `scripts/with-clusters.sh`",
        f"- rbdcp: {info.rbdcp_version}, a private copy of `{c.rbdcp_orig}` (sha256 {info.rbdcp_sha[:12]}, "
        f"built {info.rbdcp_mtime}); {info.git}"
        + (f"; extra arguments `RBDCP_ARGS={' '.join(c.rbdcp_args)}`" if c.rbdcp_args else ""),
        f"- Others: {info.others}" + (f" {info.qemu_note}" if info.qemu_note else ""),
        f"- Source `rbd/{SRC}` on cluster 1 (made by this script, fixed seed): {IMAGE_SIZE // MIB} MiB, "
        f"object size {2 ** s.order // MIB} MiB, features {s.features}. "
        f"Snapshot `s1`: {DATA_BYTES // MIB} MiB of incompressible pseudo-random data in {len(s.extents)} scattered "
        f"4 KiB-aligned extents of 64 KiB-4 MiB, the rest holes (a sparse file, `rbd import`ed). Snapshot `s2`: "
        f"s1 plus {CHANGE_BYTES // MIB} MiB of changes in {s.records} scattered records of 4 KiB-1 MiB, of which "
        f"{len(s.zero_records)} are zeroed ranges ({s.zero_bytes / MIB:.2f} MiB, {s.zero_over_data / MIB:.2f} MiB "
        f"of it over s1's data) and the rest {s.write_bytes / MIB:.2f} MiB of new data (a v1 diff stream written "
        "here, applied with `rbd import-diff`). "
        f"`rbd diff` reports {s.alloc_s1 / MIB:.1f} MiB in s1 and {s.alloc_s12 / MIB:.1f} MiB changed from s1 "
        "to s2 (librbd lists each object from its offset 0 to its last written byte, not the extents inside), "
        "so the tools read those amounts, zeroes included; the MiB/s below count only the data. "
        f"Snapshot `s3`: s2 plus a small change, {SMALL_BYTES // MIB} MiB of new data in {s.small_records} "
        "scattered records of 4 KiB-1 MiB (applied alike), the hourly backup's case: its cost is mostly the "
        "fixed cost of a run (connect, open, lock, snapshot).",
        "- Method: per scenario one untimed warm-up run per tool, each checked once: the sha256 of `rbd export` of "
        "the copy must equal the source snapshot's (a mismatch fails the run). Then "
        f"{c.rounds} timed rounds; in each round every tool runs once, the order rotating round by round "
        "(round 1: A B C, round 2: B C A, ...). Every run goes into a fresh destination, removed after it "
        "(`rbd snap purge`, `rbd rm`). Wall time from Python's `perf_counter` around the whole command or "
        "pipeline (process start and cluster connection included). Client CPU = user+sys of the tool's "
        "processes (from `wait4`, each process under GNU `time`, whose `%M` gives its peak RSS: a child forked "
        "from the bench's Python would start at Python's RSS; the RSS column is the largest process of the "
        "command line); OSD CPU = user+sys both OSDs used meanwhile (the machine has "
        f"{os.cpu_count()} cores; the mons, and other users, are not counted). MiB/s = source data bytes "
        f"(s1: {DATA_BYTES // MIB} MiB; incremental: the {CHANGE_BYTES // MIB} MiB of changed ranges) / median "
        "seconds, 1 MiB = 2^20 bytes. \"5 ms away\": every destination-side client reads cluster 2's "
        "`far.conf` (ceph.conf plus `ms_inject_delay_type = osd`, `ms_inject_delay_max = 0.01`, "
        "`ms_inject_delay_probability = 1`: each OSD reply arrives 0-10 ms late); the source side stays local.",
        f"- rados bench: once per round of b (and of e-b), right after that round's copies, writing "
        f"{c.rados_objects} objects of 4 MiB ({c.rados_objects * 4} MiB, the volume of the copy) with 16 in "
        "flight. It is capped with `--max-objects` because an uncapped 10 s run writes 5-8 GiB here, which a "
        "memstore OSD keeps in RAM twice over (its device is 8 GiB). Its bandwidth excludes process start "
        "and connection, and its objects land in memory the OSD already holds (freed by the previous copy), "
        "its fastest case.",
        "",
        f"Commands, exactly as run (C1 = `{c.conf1}`, C2 = `{c.conf2}`, far = `{c.far2}`; "
        "the rbdcp path is the private copy of the binary, removed after the run; "
        "checks use `rbd -c CONF export --no-progress IMAGE - | sha256`):",
        "",
        "```sh",
        *cmds,
        "```",
    ]
    for sc in scs:
        L += ["", f"### {sc.key}: {sc.title}, {c.rounds} rounds", "", table(sc)]
        if sc.rados:
            L += ["", f"`rados bench` write, {sc.key} destination: median {med(sc.rados):.0f} MiB/s, min "
                      f"{min(sc.rados):.0f}, max {max(sc.rados):.0f} (runs: "
                      + " ".join(f"{x:.0f}" for x in sc.rados) + ")."]
    L += ["", "### Targets", "", *verdict_lines, "",
          "Medians from one run on a shared 2-core machine; differences of a few percent are noise "
          "(more rounds: `ROUNDS=9 make bench`)."]
    body = "\n".join(L)
    if c.out == "-":
        print(f"{BEGIN}\n{body}\n{END}")
        return
    splice_section(c.out, "rbd", body)
    log(f"wrote {c.out} (rbd section)")


# ---------------------------------------------------------------- main

class Info:
    pass


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cleanup_all(c):
    for conf, image in ((c.conf1, SRC), (c.conf1, DST), (c.conf2, DST), (c.conf2, INC)):
        try:
            remove_image(conf, image)
        except Fail as e:
            log(f"cleanup: {e}")
    run(["rados", "-c", c.conf2, "-p", POOL, "cleanup", "--run-name", "rbdbench"], check=False, timeout=300)


def main():
    c = configure()
    info = Info()
    info.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info.load0 = loadavg()
    for conf in (c.conf1, c.conf2):
        rc, out, err = run(["timeout", "30", "ceph", "-c", conf, "--connect-timeout", "10", "health"], check=False,
                           timeout=40)
        if rc != 0:
            die(f"cluster of {conf} does not answer `ceph health`: {err.strip()}")
        if "full" in out:
            die(f"cluster of {conf} reports: {out.strip()} (start fresh clusters)")
    os.makedirs(c.bench_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="rbd.", dir=c.bench_dir)
    try:
        c.rbdcp_copy = os.path.join(work, "rbdcp")
        shutil.copy2(c.rbdcp_orig, c.rbdcp_copy)
        with open(c.rbdcp_copy, "rb") as f:
            info.rbdcp_sha = hashlib.sha256(f.read()).hexdigest()
        info.rbdcp_mtime = datetime.datetime.fromtimestamp(os.path.getmtime(c.rbdcp_orig),
                                                           datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        info.rbdcp_version = run([c.rbdcp_copy, "--version"])[1].strip()
        info.git = git_rev(c.rbdcp_orig)
        info.ceph_version = run(["ceph", "--version"])[1].strip()
        qemu, info.qemu_note = (ensure_qemu(c) if c.only & set("be") else (None, ""))
        others = [run(["rbd", "--version"])[1].strip().replace("ceph version", "rbd, rados: ceph")]
        if qemu:
            others.append(run([qemu, "--version"])[1].splitlines()[0].strip())
        info.others = "; ".join(others) + "."
        if info.qemu_note:
            log(info.qemu_note)
        timer = Timer(c)
        if not timer.osds:
            log("note: OSD pids not found next to the confs; the OSD CPU column will read 0")
        try:
            log(f"cluster 1 {c.conf1}, cluster 2 {c.conf2} (far: {c.far2}); {c.rounds} rounds")
            cleanup_all(c)
            info.source = make_source(c, work)
            scs = scenarios(c, info.source, qemu)
            for sc in scs:
                run_scenario(c, sc, timer)
        finally:
            log("removing the images")
            cleanup_all(c)
        verdict_lines, ok = verdicts(c, scs)
        info.load1 = loadavg()
        info.elapsed = time.monotonic() - T_START
        for line in verdict_lines:
            log(line)
        write_report(c, info, scs, verdict_lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - T_START:.0f} s")
    if not ok and c.strict:
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fail as e:
        log(f"FAIL: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
