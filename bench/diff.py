#!/usr/bin/env python3
"""Benchmark: applying and writing `rbd export-diff` v1 streams, rbdcp against the stock
tools, timed side by side in one run against two local Ceph clusters, written to the `diff`
section of BENCHMARKS.md (between <!-- diff:begin --> and <!-- diff:end -->).

Usage (normally via `make bench`):
    bash scripts/with-clusters.sh python3 bench/diff.py

The stream is generated here (fixed seed): banner, `t d1`, `s`, then `w` records of
incompressible data in ascending offset order, non-overlapping, of log-uniform sizes
4 KiB-1 MiB (4 KiB-aligned), scattered over the image, then `e`. It is written to BENCH_DIR
(on disk), fsynced, and read from the page cache by every run.

Scenarios (each import into a fresh image `rbd/dimp` on cluster 2, made beforehand with
`rbd create --size IMAGE` and removed after the run; every tool creates the to-snap d1):
  local   the diff imported into cluster 2: rbdcp import-diff; rbd import-diff FILE;
          cat FILE | rbd import-diff -; both again with --rbd_cache=false; and the destination's
          ceiling: rbd bench --io-type write --io-pattern rand --io-size <mean record size>
          --io-threads 64 --rbd_cache=false --io-total <data bytes>, against a fresh image alike
  far     the same with every client reading cluster 2's far.conf ("5 ms away")
  export  the diff imported once (untimed) into rbd/dexp on cluster 1; then
          rbdcp export-diff vs rbd export-diff of rbd/dexp@d1 into a fresh file on disk
Each import tool's result is checked once (its warm-up run): the sha256 of `rbd export` of
rbd/dimp@d1 must equal the image the stream describes (computed while generating it). Each
export tool's output is checked once by importing it with `rbd import-diff` into a fresh
image on cluster 2 and comparing the same way.

Environment:
  RBDCP_CONF1, RBDCP_CONF2  the two clusters' ceph.conf (required; scripts/with-clusters.sh sets them)
  RBDCP_FAR_CONF2     destination conf for `far` (default: far.conf next to RBDCP_CONF2)
  RBDCP               rbdcp binary (default <repo>/target/release/rbdcp; a private copy of it is used
                      for the whole run, so a concurrent rebuild cannot change it half-way)
  RBDCP_ARGS          extra arguments for every timed rbdcp run, e.g. "-j 32"
  RBDCP_JOBS          comma list of -j values, e.g. "16,32,64,128": adds a row `rbdcp -j N` per value
                      to the import tables, timed in the same rounds (default none)
  ROUNDS              timed rounds per scenario (default 5, minimum 5)
  DIFF_DATA_MIB       data bytes of the stream in MiB (default 1024)
  DIFF_IMAGE_MIB      image size in MiB (default 4096)
  BENCH_ONLY          comma list of scenarios: local, far, export (default all; implies BENCH_OUT=-)
  BENCH_TOOLS         comma list of import tools: rbdcp, file, pipe, file-nocache, pipe-nocache,
                      ceiling (default all; implies BENCH_OUT=-); the rbdcp -j rows always run
  BENCH_OUT           report file (default <repo>/BENCHMARKS.md); "-" prints the section instead
  BENCH_SECTION       the marker name of the section written (default diff), e.g. diff-jobs for a -j sweep
  BENCH_DIR           work dir for the stream and the exported files (default /var/tmp/rbdcp-bench)
  RUN_TIMEOUT         seconds one run may take before it counts as failed (default 300)
  BENCH_STRICT=1      exit 3 when a target is missed (default: report only)

Correctness failures (a result differs, a tool fails) exit non-zero and leave BENCH_OUT
untouched. Images made here are removed at the end, also after a failure. Stdlib only; the
process, timing and rbd helpers come from bench/rbd.py.
"""

import datetime
import hashlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time


sys.dont_write_bytecode = True   # no __pycache__ in bench/


def _load_rbd_bench():
    """bench/rbd.py as a module (its helpers: run, Timer, remove_image, export_hash, ...), under its own
    name so it cannot be confused with Ceph's `rbd` Python binding."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rbd.py")
    spec = importlib.util.spec_from_file_location("bench_rbd", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_rbd"] = mod
    spec.loader.exec_module(mod)
    return mod


rb = _load_rbd_bench()
Fail, die, run, show, show_pipeline = rb.Fail, rb.die, rb.run, rb.show, rb.show_pipeline
splice_section = rb.splice_section

KIB = 1024
MIB = 1024 * KIB
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

POOL = "rbd"
IMP, EXP, CHK = "dimp", "dexp", "dchk"   # import target (c2), export source (c1), export check (c2)
TO_SNAP = "d1"
BASE_SNAP = "d0"                           # incr: the from-snap, a base layer under the stream
BASE_MIB = 512                             # incr: the base layer's bytes (rbd bench, 1 MiB random writes)
REC_MIN_PAGES, REC_MAX_PAGES = 1, 256   # records of 4 KiB .. 1 MiB
PAGE = 4 * KIB
SEED = 20261127
SECTION = os.environ.get("BENCH_SECTION", "diff")
BEGIN, END = f"<!-- {SECTION}:begin -->", f"<!-- {SECTION}:end -->"
REF = "rbdcp"
CEILING = "ceiling"
# targets (issue 7, point 6)
CEILING_SHARE = 0.80
FAR_PIPE_FACTOR = 10.0
EXPORT_FACTOR = 1.0
CPU_FACTOR = 1.1                # client CPU per GiB, rbdcp against the lowest peer (issue 12, point 5)

T_START = time.monotonic()


def log(msg):
    print(f"[bench/diff {time.monotonic() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- configuration

IMPORT_TOOLS = ("rbdcp", "file", "pipe", "file-nocache", "pipe-nocache", "ceiling")
SCENARIOS = ("local", "far", "export", "incr")


def csv_set(name, allowed):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    got = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [x for x in got if x not in allowed]
    if bad:
        die(f"{name}: unknown {bad}; use {', '.join(allowed)}")
    return set(got)


def configure():
    c = rb.Cfg()
    c.conf1 = os.environ.get("RBDCP_CONF1", "")
    c.conf2 = os.environ.get("RBDCP_CONF2", "")
    if not c.conf1 or not c.conf2:
        die("RBDCP_CONF1 and RBDCP_CONF2 are not set. They name the two clusters' ceph.conf files; "
            "start the clusters and run this with: bash scripts/with-clusters.sh python3 bench/diff.py")
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
    c.rounds = rb.env_int("ROUNDS", 5, 5)
    c.timeout = rb.env_int("RUN_TIMEOUT", 300, 10)
    c.data_bytes = rb.env_int("DIFF_DATA_MIB", 1024, 4) * MIB
    c.image_size = rb.env_int("DIFF_IMAGE_MIB", 4096, 8) * MIB
    if c.image_size < 2 * c.data_bytes:
        die("DIFF_IMAGE_MIB must be at least twice DIFF_DATA_MIB (the records are scattered)")
    c.strict = os.environ.get("BENCH_STRICT") == "1"
    c.rbdcp_args = shlex.split(os.environ.get("RBDCP_ARGS", ""))
    c.jobs = []
    for x in os.environ.get("RBDCP_JOBS", "").replace(" ", "").split(","):
        if x:
            if not x.isdigit() or int(x) < 1:
                die(f"RBDCP_JOBS: '{x}' is not a positive integer")
            c.jobs.append(int(x))
    only = csv_set("BENCH_ONLY", SCENARIOS)
    tools = csv_set("BENCH_TOOLS", IMPORT_TOOLS)
    c.only = only or set(SCENARIOS)
    c.tools = tools or set(IMPORT_TOOLS)
    default_out = os.path.join(REPO, "BENCHMARKS.md") if not (only or tools) else "-"
    c.out = os.environ.get("BENCH_OUT", default_out)
    c.bench_dir = os.environ.get("BENCH_DIR", "/var/tmp/rbdcp-bench")
    rbdcp = os.environ.get("RBDCP", os.path.join(REPO, "target", "release", "rbdcp"))
    if not (os.path.isfile(rbdcp) and os.access(rbdcp, os.X_OK)):
        die(f"rbdcp binary not found at {rbdcp} (cargo build --release, or set RBDCP=)")
    c.rbdcp_orig = os.path.abspath(rbdcp)
    c.restarts = []                     # why cluster 2 was replaced during the run (with_recovery)
    for tool in ("rbd", "ceph", "cat"):
        if not shutil.which(tool):
            die(f"{tool} not found (bash scripts/ceph-local.sh install)")
    return c


# ---------------------------------------------------------------- the stream

class Stream:
    pass


def plan_records(rng, total, span):
    """Sorted, non-overlapping, 4 KiB-aligned (offset, length) records summing to total, of
    log-uniform length in 4 KiB..1 MiB (floor(257^u) pages, u uniform in [0, 1)), scattered over
    [0, span) with random gaps."""
    lengths, left = [], total
    while left > 0:
        pages = min(REC_MAX_PAGES, max(REC_MIN_PAGES, int((REC_MAX_PAGES + 1) ** rng.random())))
        n = min(pages * PAGE, left)
        lengths.append(n)
        left -= n
    free = (span - total) // PAGE
    w = [rng.random() for _ in range(len(lengths) + 1)]
    s = sum(w)
    gaps = [int(free * x / s) for x in w]
    gaps[-1] += free - sum(gaps)
    out, off = [], 0
    for g, n in zip(gaps, lengths):
        off += g * PAGE
        out.append((off, n))
        off += n
    assert off + gaps[-1] * PAGE == span
    return out


def make_stream(c, work):
    """Writes the v1 stream to WORK/d1.diff (fsynced) and returns what it describes: the sha256 of
    the whole image after applying it to an empty image, its records, sizes."""
    rng = random.Random(SEED)
    recs = plan_records(rng, c.data_bytes, c.image_size)
    path = os.path.join(work, "d1.diff")
    h = hashlib.sha256()
    zeros = memoryview(bytes(4 * MIB))

    def hash_zeros(n):
        while n > 0:
            k = min(n, len(zeros))
            h.update(zeros[:k])
            n -= k

    pos = 0
    with open(path, "wb") as f:
        f.write(b"rbd diff v1\n")
        f.write(b"t" + struct.pack("<I", len(TO_SNAP)) + TO_SNAP.encode())
        f.write(b"s" + struct.pack("<Q", c.image_size))
        for off, n in recs:
            b = rng.randbytes(n)
            f.write(b"w" + struct.pack("<QQ", off, n))
            f.write(b)
            hash_zeros(off - pos)
            h.update(b)
            pos = off + n
        f.write(b"e")
        hash_zeros(c.image_size - pos)
        f.flush()
        os.fsync(f.fileno())
    s = Stream()
    s.path = path
    s.records = recs
    s.sha = (h.hexdigest(), c.image_size)
    s.file_bytes = os.path.getsize(path)
    lens = sorted(n for _, n in recs)
    s.mean = c.data_bytes / len(recs)
    s.median = statistics.median(lens)
    s.min, s.max = lens[0], lens[-1]
    s.small = sum(1 for n in lens if n <= 64 * KIB)
    s.big = sum(1 for n in lens if n >= 512 * KIB)
    s.objects = len({o // (4 * MIB) for off, n in recs for o in (off, off + n - 1)})
    # rbd bench's io size: the mean, rounded to whole 4 KiB pages (the records are page-aligned)
    s.io_size = max(PAGE, round(s.mean / PAGE) * PAGE)
    log(f"stream {path}: {len(recs)} records, {c.data_bytes / MIB:.0f} MiB of data over a "
        f"{c.image_size / MIB:.0f} MiB image, mean {s.mean / KIB:.1f} KiB, median {s.median / KIB:.0f} KiB; "
        f"file {s.file_bytes} bytes; image sha256 {s.sha[0][:12]}")
    return s


# ---------------------------------------------------------------- checks

def check_image(conf, spec, want, what):
    got, n = rb.export_hash(conf, spec)
    if got != want[0] or n != want[1]:
        die(f"MISMATCH: {what}: `rbd export {POOL}/{spec}` gives sha256 {got[:16]}... over {n} bytes, "
            f"the stream describes {want[0][:16]}... over {want[1]} bytes")
    log(f"  check ok: {what} (sha256 {got[:12]}, {n} bytes)")


def snaps_of(conf, image):
    _, out, _ = run(rb.rbd(conf, "snap", "ls", f"{POOL}/{image}"))
    return re.findall(r"^\s*\d+\s+(\S+)\s", out, re.M)


# ---------------------------------------------------------------- scenarios

class Tool:
    def __init__(self, name, key, argvs, check=True):
        self.name, self.key, self.argvs, self.check = name, key, argvs, check


class Scenario:
    def __init__(self, key, title, tools):
        self.key, self.title, self.tools = key, title, tools
        self.runs = {t.name: [] for t in tools}     # name -> [(wall, cpu, osd)]
        self.rss = {t.name: [] for t in tools}      # name -> [peak RSS MiB of the largest process]
        self.bench_mibs = []                         # rbd bench's own bandwidth per round
        self.own = []                                # rbdcp's own seconds (its --json report) per round
        self.extra = {t.name: [] for t in tools}     # export: (tool-only seconds, output bytes)


def import_tools(c, s, dconf):
    R = [c.rbdcp_copy]
    spec = f"{POOL}/{IMP}"
    f = s.path
    out = []
    if "rbdcp" in c.tools:
        out.append(Tool(REF, "rbdcp", [R + ["import-diff", f, rb.loc(IMP, dconf), "--no-progress", "--json",
                                            *c.rbdcp_args]]))
    for j in c.jobs:
        out.append(Tool(f"rbdcp -j {j}", f"rbdcp-j{j}",
                        [R + ["import-diff", f, rb.loc(IMP, dconf), "--no-progress", *c.rbdcp_args,
                              "-j", str(j)]]))
    nc = ["--rbd_cache=false"]
    if "file" in c.tools:
        out.append(Tool("rbd import-diff FILE", "file",
                        [rb.rbd(dconf, "import-diff", "--no-progress", f, spec)]))
    if "pipe" in c.tools:
        out.append(Tool("cat FILE | rbd import-diff -", "pipe",
                        [["cat", f], rb.rbd(dconf, "import-diff", "--no-progress", "-", spec)]))
    if "file-nocache" in c.tools:
        out.append(Tool("rbd import-diff FILE, cache off", "file-nocache",
                        [rb.rbd(dconf, "import-diff", "--no-progress", *nc, f, spec)]))
    if "pipe-nocache" in c.tools:
        out.append(Tool("cat FILE | rbd import-diff -, cache off", "pipe-nocache",
                        [["cat", f], rb.rbd(dconf, "import-diff", "--no-progress", *nc, "-", spec)]))
    if "ceiling" in c.tools:
        out.append(Tool(CEILING, "ceiling",
                        [rb.rbd(dconf, "bench", "--io-type", "write", "--io-pattern", "rand",
                                "--io-size", str(s.io_size), "--io-threads", "64", *nc,
                                "--io-total", str(c.data_bytes), spec)], check=False))
    return out


def scenarios(c, s):
    out = []
    if "local" in c.only:
        out.append(Scenario("local", "import-diff into cluster 2", import_tools(c, s, c.conf2)))
    if "far" in c.only:
        out.append(Scenario("far", "import-diff into cluster 2, 5 ms away (far.conf)",
                            import_tools(c, s, c.far2)))
    if "export" in c.only:
        R = [c.rbdcp_copy]
        out.append(Scenario("export", "export-diff from cluster 1 into a file", [
            Tool(REF, "rbdcp", [R + ["export-diff", rb.loc(EXP, c.conf1, TO_SNAP), "OUT", "--no-progress",
                                     *c.rbdcp_args]]),
            Tool("rbd export-diff", "rbd", [rb.rbd(c.conf1, "export-diff", "--no-progress",
                                                  f"{POOL}/{EXP}@{TO_SNAP}", "OUT")]),
        ]))
    if "incr" in c.only:
        R = [c.rbdcp_copy]
        out.append(Scenario("incr", f"export-diff --from-snap {BASE_SNAP} from cluster 1 into a file", [
            Tool(REF, "rbdcp", [R + ["export-diff", "--from-snap", BASE_SNAP, rb.loc(EXP, c.conf1, TO_SNAP), "OUT",
                                     "--no-progress", *c.rbdcp_args]]),
            Tool("rbd export-diff", "rbd", [rb.rbd(c.conf1, "export-diff", "--no-progress", "--from-snap", BASE_SNAP,
                                                  f"{POOL}/{EXP}@{TO_SNAP}", "OUT")]),
        ]))
    return out


BENCH_RE = re.compile(r"^elapsed:\s*(\d+)\s+ops:\s*(\d+)\s+ops/sec:\s*([0-9.]+)\s+bytes/sec:", re.M)


def own_seconds(out):
    """The `seconds` of rbdcp's --json report: from its first record to the to-snap, without process
    start, connection and image open (as rbd bench's own figure leaves them out)."""
    try:
        return float(json.loads(out.strip().splitlines()[-1])["seconds"])
    except (ValueError, KeyError, IndexError) as e:
        die(f"no --json report with `seconds` in rbdcp's output ({e}):\n{out[-1500:]}")


def bench_mibs(out, io_size):
    """rbd bench's own bandwidth in MiB/s, from its last line (ops/sec x io size)."""
    m = BENCH_RE.search(out)
    if not m:
        die(f"no 'elapsed: .. ops: .. ops/sec: ..' line in rbd bench's output:\n{out[-1500:]}")
    return float(m.group(3)) * io_size / MIB


def timed_with_output(timer, argvs, what):
    """Timer.run, also returning what the last command printed (stdout and stderr; rbd bench prints
    its result there): the last command runs as `sh -c 'exec "$@" >"$0" 2>&1' FILE ARGV...`, which
    execs it with its output redirected, so nothing else is added to its time."""
    fd, path = tempfile.mkstemp(prefix="diffbench.", suffix=".out")
    os.close(fd)
    try:
        wrapped = argvs[:-1] + [["sh", "-c", 'exec "$@" >"$0" 2>&1', path, *argvs[-1]]]
        wall, cpu, osd = timer.run(wrapped, what)
        with open(path, errors="replace") as f:
            return wall, cpu, osd, f.read()
    finally:
        os.unlink(path)


def run_import(c, sc, s, timer, checked, first):
    names = [t.name for t in sc.tools]
    log(f"scenario {sc.key}: {sc.title}")
    rb.remove_image(c.conf2, IMP)
    # Round 0 is an untimed warm-up that also checks each tool once. It runs in the first import
    # scenario only (or while a tool is unchecked): later ones use the same warmed-up cluster 2, and
    # the uncached pipe 5 ms away alone would add about a minute.
    sc.warmup = first or any(t.check and t.key not in checked for t in sc.tools)
    for rnd in range(0 if sc.warmup else 1, c.rounds + 1):
        k = rnd % len(names)
        order = names[k:] + names[:k]           # rotate, so no tool always runs first
        for name in order:
            t = next(x for x in sc.tools if x.name == name)
            what = f"{sc.key} {name} {'warm-up' if rnd == 0 else f'round {rnd}'}"

            def one_run():
                run(rb.rbd(c.conf2, "create", "--size", str(c.image_size // MIB), f"{POOL}/{IMP}"))
                if t.key == "ceiling":
                    wall, cpu, osd, out = timed(c, timer, t.argvs, what, with_output=True)
                    return wall, cpu, osd, bench_mibs(out, s.io_size)
                if t.key == "rbdcp" and sc.key != "export":
                    wall, cpu, osd, out = timed(c, timer, t.argvs, what, with_output=True)
                    return wall, cpu, osd, own_seconds(out)
                return (*timed(c, timer, t.argvs, what), None)

            wall, cpu, osd, mibs = with_recovery(c, timer, s, what, one_run)
            if rnd == 0:
                log(f"  warm-up {name}: {wall:.3f} s"
                    + (f" (rbd bench: {mibs:.0f} MiB/s)" if mibs and t.key == "ceiling" else ""))
                if t.check and t.key not in checked:
                    if snaps_of(c.conf2, IMP) != [TO_SNAP]:
                        die(f"{what}: {POOL}/{IMP} has snapshots {snaps_of(c.conf2, IMP)}, expected [{TO_SNAP}]")
                    check_image(c.conf2, f"{IMP}@{TO_SNAP}", s.sha, f"{name} ({sc.key})")
                    checked.add(t.key)
            else:
                sc.runs[name].append((wall, cpu, osd))
                sc.rss[name].append(timer.rss)
                if t.key == "rbdcp" and mibs is not None:
                    sc.own.append(mibs)
                    mibs = None
                    log(f"  round {rnd} {name}: {wall:.3f} s (client CPU {cpu:.2f} s, OSDs {osd:.2f} s); "
                        f"its own report: {sc.own[-1]:.3f} s")
                else:
                    if mibs is not None:
                        sc.bench_mibs.append(mibs)
                    log(f"  round {rnd} {name}: {wall:.3f} s (client CPU {cpu:.2f} s, OSDs {osd:.2f} s)"
                        + (f"; rbd bench: {mibs:.0f} MiB/s" if mibs else ""))
            with_recovery(c, timer, s, f"{what}: removing {POOL}/{IMP}", lambda: rb.remove_image(c.conf2, IMP))
            time.sleep(0.3)                     # let the OSD settle (deletes)


def timed(c, timer, argvs, what, with_output=False):
    """Runs one timed command or pipeline; a failure says how the clusters are."""
    try:
        return timed_with_output(timer, argvs, what) if with_output else timer.run(argvs, what)
    except Fail as e:
        die(f"{e}\n(health now: {rb.health(c)})")


def restart_cluster2(c, timer):
    """Replaces cluster 2 by a fresh one at the same place (conf path, port), as with-clusters.sh
    started it, with scripts/ceph-local.sh."""
    d = os.path.dirname(c.conf2)
    root, name = os.path.dirname(d), os.path.basename(d)
    with open(c.conf2) as f:
        m = re.search(r"^mon_host\s*=\s*v2:[0-9.]+:(\d+)", f.read(), re.M)
    if not m:
        die(f"cannot restart cluster 2: no mon port in {c.conf2}")
    cl = os.path.join(REPO, "scripts", "ceph-local.sh")
    env = dict(os.environ, RBDCP_CEPH_ROOT=root)
    for argv in (["bash", cl, "stop", name], ["bash", cl, "start", name, m.group(1)]):
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            die(f"restarting cluster 2 failed: {show(argv)}: {p.stderr.strip()[-1500:]}")
    if os.path.abspath(p.stdout.strip()) != c.conf2 or not os.path.isfile(c.far2):
        die(f"restarting cluster 2: ceph-local.sh printed {p.stdout.strip()!r}, expected {c.conf2}")
    timer.osds = rb.Timer(c).osds


def with_recovery(c, timer, s, what, fn):
    """fn(); if it fails while cluster 2 reports a full OSD (memstore's space count can wrap after
    snapshot removals: it then drops every write, see /work/shared/notes/ceph-local.md), replaces
    cluster 2 by a fresh one, warms it up with one untimed import, and runs fn once more."""
    try:
        return fn()
    except Fail as e:
        rc, out, err = run(["timeout", "20", "ceph", "-c", c.conf2, "--connect-timeout", "10", "health"],
                           check=False, timeout=30)
        if "full" not in out:
            raise
        log(f"cluster 2 reports `{out.strip()}` after {what}; restarting it (the run is repeated)")
        c.restarts.append(f"{what} ({out.strip()})")
        restart_cluster2(c, timer)
        # untimed warm-up, so the repeated run does not pay for a fresh OSD's first writes
        run(rb.rbd(c.conf2, "create", "--size", str(c.image_size // MIB), f"{POOL}/{IMP}"))
        run(rb.rbd(c.conf2, "import-diff", "--no-progress", s.path, f"{POOL}/{IMP}"), timeout=c.timeout)
        rb.remove_image(c.conf2, IMP)
        log("cluster 2 restarted and warmed up")
        return fn()


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_export(c, sc, s, timer, work):
    log(f"scenario {sc.key}: {sc.title}")
    incr = sc.key == "incr"
    rb.remove_image(c.conf1, EXP)
    run(rb.rbd(c.conf1, "create", "--size", str(c.image_size // MIB), f"{POOL}/{EXP}"))
    base_path = os.path.join(work, "base.diff")
    if incr:
        # a base layer the stream partly overwrites, the from-snap on top of it
        for argv in base_layer(c):
            run(argv, timeout=c.timeout)
        run(rb.rbd(c.conf1, "export-diff", "--no-progress", f"{POOL}/{EXP}@{BASE_SNAP}", base_path),
            timeout=c.timeout)
    run(rb.rbd(c.conf1, "import-diff", "--no-progress", s.path, f"{POOL}/{EXP}"), timeout=c.timeout)
    if incr:
        want = rb.export_hash(c.conf1, f"{EXP}@{TO_SNAP}")
        log(f"  export source rbd/{EXP}@{TO_SNAP}: the base layer and the stream, sha256 {want[0][:12]}")
    else:
        want = s.sha
        check_image(c.conf1, f"{EXP}@{TO_SNAP}", want, "export source rbd/dexp@d1 (rbd import-diff of the stream)")
    out_path = os.path.join(work, "out.diff")
    names = [t.name for t in sc.tools]
    for rnd in range(0, c.rounds + 1):
        k = rnd % len(names)
        order = names[k:] + names[:k]
        for name in order:
            t = next(x for x in sc.tools if x.name == name)
            argvs = [[out_path if a == "OUT" else a for a in argv] for argv in t.argvs]
            if os.path.exists(out_path):
                os.unlink(out_path)
            what = f"{sc.key} {name} {'warm-up' if rnd == 0 else f'round {rnd}'}"
            wall, cpu, osd = timed(c, timer, argvs, what)
            t0 = time.perf_counter()
            fsync_path(out_path)                # rbdcp fsyncs its output itself, rbd does not
            sync = time.perf_counter() - t0
            size = os.path.getsize(out_path)
            if rnd == 0:
                log(f"  warm-up {name}: {wall:.3f} s + fsync {sync:.3f} s, {size} bytes")

                def check_output():
                    rb.remove_image(c.conf2, CHK)
                    run(rb.rbd(c.conf2, "create", "--size", str(c.image_size // MIB), f"{POOL}/{CHK}"))
                    if incr:
                        run(rb.rbd(c.conf2, "import-diff", "--no-progress", base_path, f"{POOL}/{CHK}"),
                            timeout=c.timeout)
                    run(rb.rbd(c.conf2, "import-diff", "--no-progress", out_path, f"{POOL}/{CHK}"),
                        timeout=c.timeout)
                    check_image(c.conf2, f"{CHK}@{TO_SNAP}", want,
                                f"{name}'s output, applied by rbd import-diff to "
                                + (f"a copy of @{BASE_SNAP}" if incr else "an empty image"))
                    rb.remove_image(c.conf2, CHK)

                with_recovery(c, timer, s, f"checking {name}'s output", check_output)
            else:
                sc.runs[name].append((wall + sync, cpu, osd))
                sc.rss[name].append(timer.rss)
                sc.extra[name].append((wall, size))
                log(f"  round {rnd} {name}: {wall + sync:.3f} s (tool {wall:.3f} + fsync {sync:.3f}; "
                    f"client CPU {cpu:.2f} s, OSDs {osd:.2f} s), {size} bytes")
            os.unlink(out_path)
            time.sleep(0.3)
    rb.remove_image(c.conf1, EXP)
    if os.path.exists(base_path):
        os.unlink(base_path)
    sc.export_cmd_note = out_path


def base_layer(c):
    """incr: the commands that write the base layer of rbd/dexp and take the from-snap."""
    return [rb.rbd(c.conf1, "bench", "--io-type", "write", "--io-pattern", "rand", "--io-size", "1M",
                   "--io-threads", "16", "--io-total", f"{BASE_MIB}M", f"{POOL}/{EXP}"),
            rb.rbd(c.conf1, "snap", "create", f"{POOL}/{EXP}@{BASE_SNAP}")]


# ---------------------------------------------------------------- report

med = statistics.median


def f3(x):
    return f"{x:.3f}"


def walls(sc, name):
    return [w for w, _, _ in sc.runs[name]]


def tool_median(sc, name):
    return med(walls(sc, name))


def table(c, sc):
    ref = tool_median(sc, REF) if sc.runs.get(REF) else None
    rows = ["| tool | runs | median s | min s | max s | MiB/s of data (median) | time ratio (tool median / rbdcp median) | client CPU s (median) | client CPU s per GiB (median) | peak RSS MiB (largest process, median) | OSD CPU s (median) | cores busy (client + OSD CPU / wall, median) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in sc.tools:
        rs = sc.runs[t.name]
        ws = [w for w, _, _ in rs]
        m = med(ws)
        ratio = f"{m / ref:.2f}" if ref else "-"
        rows.append(f"| {rb.cell(t.name)} | {len(ws)} | {f3(m)} | {f3(min(ws))} | {f3(max(ws))} | "
                    f"{c.data_bytes / MIB / m:.0f} | {ratio} | {med([x for _, x, _ in rs]):.2f} | "
                    f"{cpu_per_gib(c, sc, t.name):.2f} | {med(sc.rss[t.name]):.0f} | "
                    f"{med([x for _, _, x in rs]):.2f} | {med([(x + y) / w for w, x, y in rs]):.2f} |")
    raw = "; ".join(f"{t.name}: " + " ".join(f3(w) for w in walls(sc, t.name)) for t in sc.tools)
    text = "\n".join(rows) + f"\n\nEach run in seconds, in round order: {raw}."
    if sc.bench_mibs:
        b = sc.bench_mibs
        text += (f"\n\nThe ceiling, as `rbd bench` reports it (ops/s x io size; from its first I/O to its last, "
                 f"without process start, connection and image open): median {med(b):.0f} MiB/s, min {min(b):.0f}, "
                 f"max {max(b):.0f} (runs: " + " ".join(f"{x:.0f}" for x in b) + ").")
    if sc.own:
        text += (f"\n\nrbdcp's own report (`--json` seconds: from its first record to the to-snap, without "
                 f"process start, connection and image open): median {med(sc.own):.3f} s (runs: "
                 + " ".join(f3(x) for x in sc.own) + ").")
    if sc.key in ("export", "incr"):
        parts = []
        for t in sc.tools:
            tw = [w for w, _ in sc.extra[t.name]]
            sizes = sorted({n for _, n in sc.extra[t.name]})
            parts.append(f"{t.name}: tool alone median {med(tw):.3f} s, output "
                         + ", ".join(f"{n / MIB:.1f} MiB" for n in sizes))
        text += "\n\n" + "; ".join(parts) + "."
    return text


def cpu_per_gib(c, sc, name):
    """The median client CPU seconds per GiB of the stream's data."""
    return med([x for _, x, _ in sc.runs[name]]) / (c.data_bytes / 2**30)


def thr(c, sc, name):
    return c.data_bytes / MIB / tool_median(sc, name)


def verdicts(c, scs):
    by = {sc.key: sc for sc in scs}
    lines, ok = [], True

    def add(held, text):
        nonlocal ok
        ok = ok and held
        lines.append(f"- **{'holds' if held else 'MISSED'}**: {text}")

    for key, where in (("local", "on loopback"), ("far", "5 ms away")):
        sc = by.get(key)
        if not sc or not sc.bench_mibs:
            continue
        ceil = med(sc.bench_mibs)
        ceil_wall = thr(c, sc, CEILING)
        rows = [t.name for t in sc.tools if t.name.startswith("rbdcp")]
        for name in rows:
            r = thr(c, sc, name)
            share = r / ceil_wall
            text = (f"`{name}` {where} imports at {r:.0f} MiB/s ({c.data_bytes // MIB} MiB / median "
                    f"{tool_median(sc, name):.3f} s) = {share * 100:.0f}% of the ceiling's {ceil_wall:.0f} MiB/s, "
                    f"both by wall time (need >= {CEILING_SHARE * 100:.0f}%). Strictest reading: "
                    f"{r / ceil * 100:.0f}% of the {ceil:.0f} MiB/s rbd bench reports itself")
            if name == REF and sc.own:
                o = c.data_bytes / MIB / med(sc.own)
                text += (f"; like for like with that figure, rbdcp's own report (`--json` seconds, median "
                         f"{med(sc.own):.3f} s) gives {o:.0f} MiB/s = {o / ceil * 100:.0f}%")
            text += "."
            if name == REF:
                add(share >= CEILING_SHARE, text)
            else:
                lines.append(f"- (-j sweep, {'would hold' if share >= CEILING_SHARE else 'would miss'}) {text}")
    sc = by.get("local")
    if sc and REF in sc.runs and "cat FILE | rbd import-diff -" in sc.runs:
        r, p = tool_median(sc, REF), tool_median(sc, "cat FILE | rbd import-diff -")
        lines.append(f"- (no target; the issue's estimate of the 80% target is about 0.65) on loopback rbdcp takes "
                     f"{r / p:.2f}x the time of the cached pipe ({r:.3f} s vs {p:.3f} s).")
    sc = by.get("far")
    pipe = "cat FILE | rbd import-diff -, cache off"
    if sc and pipe in sc.runs:
        p = tool_median(sc, pipe)
        for name in [t.name for t in sc.tools if t.name.startswith("rbdcp")]:
            r = tool_median(sc, name)
            text = (f"`{name}` at least {FAR_PIPE_FACTOR:.0f}x faster than `{pipe}` 5 ms away: "
                    f"rbdcp {r:.3f} s, pipe {p:.3f} s, ratio {p / r:.1f} (need >= {FAR_PIPE_FACTOR:.1f}).")
            if name == REF:
                add(p / r >= FAR_PIPE_FACTOR, text)
            else:
                lines.append(f"- (-j sweep, {'would hold' if p / r >= FAR_PIPE_FACTOR else 'would miss'}) {text}")
    for sc in scs:
        peers = [t.name for t in sc.tools if not t.name.startswith(REF) and t.key != "ceiling"]
        if REF not in sc.runs or not peers:
            continue
        low = min(peers, key=lambda n: cpu_per_gib(c, sc, n))
        r, p = cpu_per_gib(c, sc, REF), cpu_per_gib(c, sc, low)
        add(r <= CPU_FACTOR * p, f"client CPU per GiB ({sc.key}): rbdcp {r:.2f} s, the lowest peer `{low}` "
                                 f"{p:.2f} s, ratio {r / p:.2f} (need <= {CPU_FACTOR:.2f}; the ceiling, "
                                 "`rbd bench`, is no peer).")
    for key, what in (("export", "`rbdcp export-diff`"), ("incr", f"`rbdcp export-diff --from-snap {BASE_SNAP}`")):
        sc = by.get(key)
        if sc:
            r, t = tool_median(sc, REF), tool_median(sc, "rbd export-diff")
            add(t / r >= EXPORT_FACTOR, f"{what} no slower than `rbd export-diff` (both until the file is "
                                        f"durable): rbdcp {r:.3f} s, rbd {t:.3f} s, ratio {t / r:.2f} "
                                        f"(need >= {EXPORT_FACTOR:.2f}).")
    return lines, ok


def write_report(c, info, s, scs, verdict_lines):
    cmds = [f"# untimed, before every import: {show(rb.rbd(c.conf2, 'create', '--size', str(c.image_size // MIB), f'{POOL}/{IMP}'))}",
            f"# untimed, after every import: rbd -c C2 snap purge {POOL}/{IMP}; rbd -c C2 rm {POOL}/{IMP}"]
    for sc in scs:
        cmds.append(f"# {sc.key}: {sc.title}")
        if sc.key in ("export", "incr"):
            base = [show(a) for a in base_layer(c)] if sc.key == "incr" else []
            cmds.append("# untimed, once: " + "; ".join(
                [show(rb.rbd(c.conf1, "create", "--size", str(c.image_size // MIB), f"{POOL}/{EXP}"))] + base
                + [show(rb.rbd(c.conf1, "import-diff", "--no-progress", s.path, f"{POOL}/{EXP}"))]))
            cmds.append(f"# OUT = {sc.export_cmd_note}, removed before and after every run; "
                        "each run is followed by an fsync of OUT (timed)")
        for t in sc.tools:
            cmds.append(show_pipeline(t.argvs))
    mibs = lambda n: f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB"  # noqa: E731
    L = [
        "## Diff streams: import-diff and export-diff (`bench/diff.py`)",
        "",
        f"- Date: {info.date}; whole run {info.elapsed:.0f} s; load average at start {info.load0}, at end {info.load1}",
        f"- Machine: {rb.machine()}; other processes share it (other engineers' clusters and builds), so only "
        "ratios from this one run mean anything",
        f"- Ceph: {info.ceph_version}; two throw-away single-node clusters (1 mon + 1 memstore OSD each, "
        "size 1, on loopback) from `scripts/with-clusters.sh`",
        f"- rbdcp: {info.rbdcp_version}, a private copy of `{c.rbdcp_orig}` (sha256 {info.rbdcp_sha[:12]}, "
        f"built {info.rbdcp_mtime}); {info.git}"
        + (f"; extra arguments `RBDCP_ARGS={' '.join(c.rbdcp_args)}`" if c.rbdcp_args else "")
        + (f"; `-j` rows added with `RBDCP_JOBS={','.join(map(str, c.jobs))}`" if c.jobs else "")
        + f"; `rbdcp import-diff --help` gives its default `-j` as {info.default_jobs}",
        f"- The stream (made by this script, seed {SEED}): a v1 diff (`rbd diff v1` banner, `t {TO_SNAP}`, "
        f"`s {c.image_size}`, `w` records, `e`; no from-snap) of {c.data_bytes / MIB:.0f} MiB of incompressible "
        f"pseudo-random data in {len(s.records)} non-overlapping `w` records in ascending offset order, scattered with "
        f"random gaps over a {c.image_size / MIB:.0f} MiB image (touching {s.objects} of its "
        f"{c.image_size // (4 * MIB)} 4 MiB objects). Record sizes are 4 KiB-aligned and log-uniform from 4 KiB "
        f"to 1 MiB (floor(257^u) pages of 4 KiB, u uniform in [0, 1)): mean {s.mean / KIB:.1f} KiB, median "
        f"{s.median / KIB:.0f} KiB, min {mibs(s.min)}, max {mibs(s.max)}; {s.small} records of at most 64 KiB, "
        f"{s.big} of at least 512 KiB. File: {s.file_bytes} bytes on disk in `{c.bench_dir}` (ext4, fsynced, then "
        "read from the page cache by every run).",
        "- The ceiling: `rbd bench` random writes of the mean record size rounded to whole pages "
        f"(`--io-size {s.io_size}` = {s.io_size / KIB:.0f} KiB), 64 threads, cache off, `--io-total` = the "
        f"stream's data bytes ({c.data_bytes}), into a fresh {c.image_size / MIB:.0f} MiB image like the imports; "
        "it runs as one more tool in each round. The 80% target compares like with like: the stream's bytes over "
        "the median wall time of each command line, timed alike (process start, connection and image open "
        "included for both). Two more readings are printed with each verdict: rbdcp's wall time against the "
        "bandwidth rbd bench reports itself (ops/s x io size, which leaves out process start, connection and "
        "image open: the strictest), and rbdcp's own `--json` seconds (which leave out the same) against it.",
        "- Method: one untimed warm-up round (every tool once) before the first import scenario's timed rounds, "
        "and one before the export's; the 5 ms scenario follows on the same warmed-up cluster 2 without one "
        "(unless it runs alone). Each tool but the ceiling is checked once, in its warm-up run: "
        f"`rbd snap ls` must show exactly `{TO_SNAP}`, and the sha256 of `rbd export` of "
        f"`rbd/{IMP}@{TO_SNAP}` ({c.image_size / MIB:.0f} MiB) must equal the image the stream describes (hashed while "
        "generating it); a mismatch fails the run. Then "
        f"{c.rounds} timed rounds; in each round every tool runs once, the order rotating round by round "
        "(round 1: A B C ..., round 2: B C ... A, ...). Every import goes into a fresh image made with `rbd create "
        f"--size {c.image_size // MIB}` (untimed), and every tool creates the to-snap as part of its run; the image "
        "is removed after it (`rbd snap purge`, `rbd rm`), so the memstore OSD holds one image at a time. Wall time "
        "from Python's `perf_counter` around the whole command or pipeline (process start and cluster connection "
        "included). Client CPU = user+sys of the tool's processes (with `cat`; from `wait4`, each process under "
        "GNU `time`, whose `%M` gives the peak RSS column: the largest process of the command line); OSD CPU = user+sys both OSDs used "
        f"meanwhile (the machine has {os.cpu_count()} cores; mons and other users not counted). MiB/s = the "
        f"stream's {c.data_bytes / MIB:.0f} MiB of data / median seconds, 1 MiB = 2^20 bytes. \"5 ms away\": "
        "every client of the timed runs (rbdcp, rbd import-diff, rbd bench) reads cluster 2's `far.conf` "
        "(ceph.conf whose `[global]` adds `ms_inject_delay_type = osd`, `ms_inject_delay_max = 0.01`, "
        "`ms_inject_delay_probability = 1`: each OSD reply arrives 0-10 ms late); the untimed create/remove/"
        "checks use ceph.conf. Client CPU 5 ms away is mostly the simulation's, not the tool's: while delayed "
        "replies are pending, the client's messenger thread busy-polls (`epoll_wait` with a zero timeout until "
        "the next sub-millisecond timer; `perf` of `rbdcp import-diff -j 16` 5 ms away, by hand on 2026-11-26, put "
        f"86% of its CPU there), which also takes a core from the OSD on this {os.cpu_count()}-core machine.",
        f"- Export: the stream is applied once (untimed) with `rbd import-diff` to `rbd/{EXP}` "
        f"({c.image_size / MIB:.0f} MiB) on cluster 1 and checked as above; then both tools write "
        f"`rbd/{EXP}@{TO_SNAP}` (no from-snap) to a fresh file on disk, removed after each run. rbdcp fsyncs its "
        "output before renaming it into place, `rbd export-diff` does not, so every export run is timed until the "
        "bench's own fsync of the file returns (tool-only medians below the table). Each tool's output is checked "
        f"once (warm-up) by applying it with `rbd import-diff` to an empty {c.image_size / MIB:.0f} MiB image on "
        "cluster 2 and comparing the sha256 of its export with the stream's image.",
        f"- Incremental export (`incr`): as the export, but `rbd/{EXP}` first gets a base layer of {BASE_MIB} MiB "
        f"(`rbd bench` random 1 MiB writes) and the snapshot `{BASE_SNAP}`, then the stream on top; both tools "
        f"write `--from-snap {BASE_SNAP}` of `@{TO_SNAP}`. Each output is checked by applying it, on cluster 2, to "
        f"a copy of `@{BASE_SNAP}` (`rbd export-diff` of it, imported) and comparing with `rbd export` of "
        f"`rbd/{EXP}@{TO_SNAP}`.",
        "- Cluster 2 restarts: " + ("none." if not c.restarts else
                                      f"{len(c.restarts)}, each replacing it by a fresh cluster and an untimed warm-up "
                                      "import, then repeating the failed step, because it falsely reported a full "
                                      "OSD (memstore's space count wraps; see the notes on local clusters): "
                                      + "; ".join(c.restarts) + "."),
        "",
        f"Commands, exactly as run (C1 = `{c.conf1}`, C2 = `{c.conf2}`, far = `{c.far2}`; "
        "the rbdcp path is the private copy of the binary, removed after the run; "
        "checks use `rbd -c CONF export --no-progress IMAGE@d1 - | sha256`):",
        "",
        "```sh",
        *cmds,
        "```",
    ]
    for sc in scs:
        L += ["", f"### {sc.key}: {sc.title}, {c.rounds} rounds", "", table(c, sc)]
    L += ["", "### Targets (issue 7, point 6)", "", *verdict_lines, "",
          "Medians from one run on a shared 2-core machine; differences of a few percent are noise "
          "(more rounds: `ROUNDS=9`)."]
    body = "\n".join(L)
    if c.out == "-":
        print(f"{BEGIN}\n{body}\n{END}")
        return
    splice_section(c.out, SECTION, body)
    log(f"wrote {c.out} ({SECTION} section)")


# ---------------------------------------------------------------- main

def cleanup_all(c):
    for conf, image in ((c.conf2, IMP), (c.conf1, EXP), (c.conf2, CHK)):
        try:
            rb.remove_image(conf, image)
        except Fail as e:
            log(f"cleanup: {e}")


def main():
    c = configure()
    info = rb.Info()
    info.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info.load0 = rb.loadavg()
    for conf in (c.conf1, c.conf2):
        rc, out, err = run(["timeout", "30", "ceph", "-c", conf, "--connect-timeout", "10", "health"], check=False,
                           timeout=40)
        if rc != 0:
            die(f"cluster of {conf} does not answer `ceph health`: {err.strip()}")
        if "full" in out:
            die(f"cluster of {conf} reports: {out.strip()} (start fresh clusters)")
    os.makedirs(c.bench_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="diff.", dir=c.bench_dir)
    ok = True
    try:
        c.rbdcp_copy = os.path.join(work, "rbdcp")
        shutil.copy2(c.rbdcp_orig, c.rbdcp_copy)
        with open(c.rbdcp_copy, "rb") as f:
            info.rbdcp_sha = hashlib.sha256(f.read()).hexdigest()
        info.rbdcp_mtime = datetime.datetime.fromtimestamp(os.path.getmtime(c.rbdcp_orig),
                                                           datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        info.rbdcp_version = run([c.rbdcp_copy, "--version"])[1].strip()
        info.git = rb.git_rev(c.rbdcp_orig)
        m = re.search(r"--jobs <N>.*?\[default: (\d+)\]", run([c.rbdcp_copy, "import-diff", "--help"])[1], re.S)
        info.default_jobs = m.group(1) if m else "?"
        info.ceph_version = run(["ceph", "--version"])[1].strip()
        timer = rb.Timer(c)
        if not timer.osds:
            log("note: OSD pids not found next to the confs; the OSD CPU column will read 0")
        log(f"cluster 1 {c.conf1}, cluster 2 {c.conf2} (far: {c.far2}); {c.rounds} rounds; "
            f"scenarios {sorted(c.only)}; import tools {sorted(c.tools)}; -j rows {c.jobs}")
        s = make_stream(c, work)
        scs = scenarios(c, s)
        try:
            cleanup_all(c)
            checked = set()
            first = True
            for sc in scs:
                if sc.key in ("export", "incr"):
                    run_export(c, sc, s, timer, work)
                else:
                    run_import(c, sc, s, timer, checked, first)
                    first = False
        finally:
            log("removing the images")
            cleanup_all(c)
        verdict_lines, ok = verdicts(c, scs)
        info.load1 = rb.loadavg()
        info.elapsed = time.monotonic() - T_START
        for line in verdict_lines:
            log(line)
        write_report(c, info, s, scs, verdict_lines)
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
