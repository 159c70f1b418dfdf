#!/usr/bin/env python3
"""Benchmark: cost that follows the data. A 1 TiB thin image and a 1 GiB image holding the
same 128 MiB (32 objects of 4 MiB, identical bytes) are copied from cluster 1 to cluster 2,
in full (s1) and incrementally after 8 MiB of changes (s1..s2, 128 writes of 64 KiB), side
by side in one run; written to the `thin` section of BENCHMARKS.md (between
<!-- thin:begin --> and <!-- thin:end -->).

Usage (normally via `make bench`):
    bash scripts/with-clusters.sh python3 bench/thin.py

Tools: rbdcp (full and --from-snap), and for the incremental copy
`rbd export-diff --from-snap s1 | rbd import-diff` as the reference. The target (issue 12):
rbdcp on the 1 TiB image within 1.5x + 1 s of rbdcp on the 1 GiB image, for both copies.

Environment:
  RBDCP_CONF1, RBDCP_CONF2  the two clusters' ceph.conf (required)
  RBDCP               rbdcp binary (default <repo>/target/release/rbdcp; copied first)
  ROUNDS              timed rounds (default 5, minimum 5)
  BENCH_OUT           report file (default <repo>/BENCHMARKS.md); "-" prints the section
  BENCH_STRICT=1      exit 3 when the target is missed
Stdlib only.
"""

import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

MIB = 1 << 20
OBJ = 4 * MIB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = {"1 GiB": ("tsmall", 1 << 30), "1 TiB": ("tthin", 1 << 40)}


def log(msg):
    print(f"thin.py: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"thin.py: {' '.join(cmd)} failed: {p.stderr.decode(errors='replace')[-2000:]}")
    return p.stdout


def diff_stream(size, records):
    """An `rbd export-diff` v1 stream of `records` [(offset, bytes)], without snapshot names."""
    out = bytearray(b"rbd diff v1\n")
    out += b"s" + size.to_bytes(8, "little")
    for off, data in records:
        out += b"w" + off.to_bytes(8, "little") + len(data).to_bytes(8, "little") + data
    out += b"e"
    return bytes(out)


def timed(cmds):
    """Runs a pipeline of `cmds`; returns (seconds, max RSS MiB of its processes, CPU s).
    Each process runs under /usr/bin/time: a child forked from this (large) Python process
    would report its RSS as its own."""
    start = time.perf_counter()
    procs, prev, notes = [], None, []
    for i, c in enumerate(cmds):
        note = tempfile.NamedTemporaryFile(prefix="rbdcp-thin-time.", delete=False)
        note.close()
        notes.append(note.name)
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M %U %S", "-o", note.name] + c, stdin=prev,
                             stdout=subprocess.PIPE if i < len(cmds) - 1 else subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if prev is not None:
            prev.close()
        prev = p.stdout
        procs.append(p)
    failed = None
    for p in procs:
        err = p.stderr.read()
        if p.wait() != 0:
            failed = (p.args, err.decode(errors="replace")[-2000:])
    secs = time.perf_counter() - start
    rss, cpu = 0.0, 0.0
    for n in notes:
        with open(n) as f:
            kib, user, sys_ = f.read().split()[-3:]
        os.unlink(n)
        rss, cpu = max(rss, int(kib) / 1024), cpu + float(user) + float(sys_)
    if failed:
        raise SystemExit(f"thin.py: {' '.join(failed[0])} failed: {failed[1]}")
    return secs, rss, cpu


def digest(conf, spec):
    """sha256 of `rbd export-diff` of `spec` (exact extents), the header's names left out."""
    data = run(["rbd", "-c", conf, "export-diff", "--no-progress", spec, "-"])
    return hashlib.sha256(data[data.index(b"s"):]).hexdigest()


def main():
    c1, c2 = os.environ.get("RBDCP_CONF1"), os.environ.get("RBDCP_CONF2")
    if not c1 or not c2:
        raise SystemExit("thin.py: RBDCP_CONF1 and RBDCP_CONF2 are required (run it through scripts/with-clusters.sh)")
    rounds = max(5, int(os.environ.get("ROUNDS", "5")))
    work = tempfile.mkdtemp(prefix="rbdcp-thin.")
    rbdcp = os.path.join(work, "rbdcp")
    shutil.copy(os.environ.get("RBDCP") or os.path.join(REPO, "target/release/rbdcp"), rbdcp)
    made = []
    try:
        rng = random.Random(12)
        data = [rng.randbytes(OBJ) for _ in range(32)]
        changes = [(rng.randrange(32), rng.randrange(OBJ // (64 << 10)) * (64 << 10), rng.randbytes(64 << 10))
                   for _ in range(128)]
        for label, (img, size) in IMAGES.items():
            stride = size // 32  # the same 32 objects, spread over the image
            s1 = diff_stream(size, [(i * stride, d) for i, d in enumerate(data)])
            s2 = diff_stream(size, [(o * stride + at, d) for o, at, d in changes])
            for n, s in (("s1", s1), ("s2", s2)):
                path = os.path.join(work, f"{img}.{n}")
                with open(path, "wb") as f:
                    f.write(s)
            run(["rbd", "-c", c1, "create", "--size", f"{size // MIB}M", f"rbd/{img}"])
            made.append((c1, img))
            for n in ("s1", "s2"):
                run(["rbd", "-c", c1, "import-diff", "--no-progress", os.path.join(work, f"{img}.{n}"), f"rbd/{img}"])
                run(["rbd", "-c", c1, "snap", "create", f"rbd/{img}@{n}"])
            log(f"{label}: {img} made")

        def src(img, snap):
            return f"rbd:rbd/{img}@{snap}:conf={c1}"

        def dst(name):
            return f"rbd:rbd/{name}:conf={c2}"

        def remove(name):
            subprocess.run(["rbd", "-c", c2, "snap", "purge", f"rbd/{name}"], capture_output=True)
            subprocess.run(["rbd", "-c", c2, "rm", f"rbd/{name}"], capture_output=True)

        tools = []  # (scenario, image label, tool, prepare(name), cmds(name))
        for label, (img, size) in IMAGES.items():
            tools.append(("full", label, "rbdcp", None,
                          lambda n, img=img: [[rbdcp, "copy", src(img, "s1"), dst(n), "--no-progress"]]))
            base = (lambda n, img=img: run([rbdcp, "copy", src(img, "s1"), dst(n), "--no-progress"]))
            tools.append(("incremental", label, "rbdcp", base,
                          lambda n, img=img: [[rbdcp, "copy", src(img, "s2"), dst(n), "--from-snap", "s1",
                                               "--no-progress"]]))
            tools.append(("incremental", label, "rbd export-diff, piped to rbd import-diff", base,
                          lambda n, img=img: [["rbd", "-c", c1, "export-diff", "--no-progress", "--from-snap", "s1",
                                               f"rbd/{img}@s2", "-"],
                                              ["rbd", "-c", c2, "import-diff", "--no-progress", "-", f"rbd/{n}"]]))
        del data, changes
        results = {}
        # Warm-up, checked once: the copy's snapshot holds the source's extents and bytes.
        for i, (scen, label, tool, prep, cmds) in enumerate(tools):
            name = f"tdst{i}"
            if prep:
                prep(name)
            timed(cmds(name))
            img = IMAGES[label][0]
            snap = "s1" if scen == "full" else "s2"
            if digest(c2, f"rbd/{name}@{snap}") != digest(c1, f"rbd/{img}@{snap}"):
                raise SystemExit(f"thin.py: {tool} ({scen}, {label}) differs from its source")
            remove(name)
            log(f"checked {tool} {scen} {label}")
        for r in range(rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            for i, (scen, label, tool, prep, cmds) in enumerate(order):
                name = f"tdst{i}"
                if prep:
                    prep(name)
                secs, rss, cpu = timed(cmds(name))
                results.setdefault((scen, label, tool), []).append((secs, rss, cpu))
                remove(name)
            log(f"round {r + 1} done")
        body = report(results, rounds, rbdcp, c1, c2)
        out = os.environ.get("BENCH_OUT") or os.path.join(REPO, "BENCHMARKS.md")
        if out == "-":
            print(body)
        else:
            benchlib.splice_section(out, "thin", body)
            log(f"wrote {out}")
        ok = all(target(results, scen) for scen in ("full", "incremental"))
        return 3 if (not ok and os.environ.get("BENCH_STRICT") == "1") else 0
    finally:
        for conf, img in made:
            subprocess.run(["rbd", "-c", conf, "snap", "purge", f"rbd/{img}"], capture_output=True)
            subprocess.run(["rbd", "-c", conf, "rm", f"rbd/{img}"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def med(runs, i):
    return statistics.median(x[i] for x in runs)


def target(results, scen):
    small, thin = results[(scen, "1 GiB", "rbdcp")], results[(scen, "1 TiB", "rbdcp")]
    return med(thin, 0) <= 1.5 * med(small, 0) + 1.0


def report(results, rounds, rbdcp, c1, c2):
    lines = [
        "## Huge thin images: cost that follows the data (`bench/thin.py`)",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds} timed rounds after one checked "
        "warm-up run per tool (the copy's snapshot must give the same `rbd export-diff` stream as the source's), "
        "the order rotating round by round; each run into a fresh image of cluster 2, removed after it.",
        "- Images: `tsmall` (1 GiB) and `tthin` (1 TiB, fast-diff on), each holding the same 128 MiB: 32 objects "
        "of 4 MiB, identical bytes, spread evenly; s1..s2 changes 8 MiB in 128 writes of 64 KiB in those objects.",
        f"- Commands (C1 = `{c1}`, C2 = `{c2}`): `rbdcp copy rbd:rbd/IMG@s1:conf=C1 rbd:rbd/DST:conf=C2`; "
        "incremental, after an untimed full copy of s1: `rbdcp copy rbd:rbd/IMG@s2:conf=C1 rbd:rbd/DST:conf=C2 "
        "--from-snap s1`, and `rbd -c C1 export-diff --from-snap s1 rbd/IMG@s2 - | rbd -c C2 import-diff - rbd/DST`.",
        "- Wall seconds (median), peak RSS of the largest process (median, MiB), client CPU seconds (median).",
        "",
        "| copy | image | tool | seconds | RSS MiB | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for (scen, label, tool), runs in results.items():
        lines.append(f"| {scen} | {label} | {tool} | {med(runs, 0):.3f} | {med(runs, 1):.1f} | {med(runs, 2):.2f} |")
    lines.append("")
    for scen in ("full", "incremental"):
        small, thin = med(results[(scen, "1 GiB", "rbdcp")], 0), med(results[(scen, "1 TiB", "rbdcp")], 0)
        lines.append(f"- {scen}: rbdcp on 1 TiB {thin:.3f} s, on 1 GiB {small:.3f} s, ratio {thin / small:.2f}; "
                     f"target 1.5x + 1 s = {1.5 * small + 1:.3f} s: {'met' if target(results, scen) else 'MISSED'}.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
