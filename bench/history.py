#!/usr/bin/env python3
"""Benchmark: moving an image with its snapshot history, and the cut-over of a migration,
side by side in one run; written to the `history` section of BENCHMARKS.md (between
<!-- history:begin --> and <!-- history:end -->).

Usage (normally via `make bench`):
    bash scripts/with-clusters.sh python3 bench/history.py

The source (cluster 1): a 512 MiB image, s1 holding 128 MiB in 32 objects of 4 MiB, then
seven more snapshots s2..s8 after 8 MiB of 64 KiB writes each (fixed seed).
Scenarios:
  near   to cluster 2: rbdcp copy --snapshots all, against
         rbd export --export-format 2 - | rbd import --export-format 2 -
  far    the same with the destination 5 ms away (cluster 2's far.conf)
  within within cluster 1: rbdcp copy --snapshots all, against rbd deep cp
  cutover  the writer stopped after a 32 MiB change: rbdcp migrate --final (after untimed
         rounds that copied everything before it), against the time a full
         rbd export | rbd import of the same image keeps the writer stopped
Every history tool is checked once (warm-up): each of s1..s8 on the destination must give
the same `rbd export-diff` stream as the source's.

Environment: RBDCP_CONF1, RBDCP_CONF2 (required), RBDCP_FAR_CONF2, RBDCP, ROUNDS (>= 5),
BENCH_OUT ("-" prints the section). Stdlib only.
"""

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
from thin import diff_stream, digest, run, timed  # noqa: E402

MIB = 1 << 20
OBJ = 4 * MIB
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 512 * MIB
SNAPS = [f"s{i}" for i in range(1, 9)]


def log(msg):
    print(f"history.py: {msg}", file=sys.stderr, flush=True)


def main():
    c1, c2 = os.environ.get("RBDCP_CONF1"), os.environ.get("RBDCP_CONF2")
    if not c1 or not c2:
        raise SystemExit("history.py: RBDCP_CONF1 and RBDCP_CONF2 are required (scripts/with-clusters.sh)")
    far = os.environ.get("RBDCP_FAR_CONF2") or os.path.join(os.path.dirname(c2), "far.conf")
    rounds = max(5, int(os.environ.get("ROUNDS", "5")))
    work = tempfile.mkdtemp(prefix="rbdcp-history.")
    rbdcp = os.path.join(work, "rbdcp")
    shutil.copy(os.environ.get("RBDCP") or os.path.join(REPO, "target/release/rbdcp"), rbdcp)
    made = []
    rng = random.Random(14)

    def rm(conf, img):
        subprocess.run(["rbd", "-c", conf, "snap", "purge", f"rbd/{img}"], capture_output=True)
        subprocess.run(["rbd", "-c", conf, "rm", f"rbd/{img}"], capture_output=True)

    def apply(conf, img, records):
        path = os.path.join(work, "change.diff")
        with open(path, "wb") as f:
            f.write(diff_stream(SIZE, records))
        run(["rbd", "-c", conf, "import-diff", "--no-progress", path, f"rbd/{img}"])

    try:
        run(["rbd", "-c", c1, "create", "--size", f"{SIZE // MIB}M", "rbd/hsrc"])
        made.append((c1, "hsrc"))
        apply(c1, "hsrc", [(i * 4 * OBJ, rng.randbytes(OBJ)) for i in range(32)])
        for snap in SNAPS:
            if snap != "s1":
                apply(c1, "hsrc", [(rng.randrange(SIZE // (64 << 10)) * (64 << 10), rng.randbytes(64 << 10))
                                   for _ in range(128)])
            run(["rbd", "-c", c1, "snap", "create", f"rbd/hsrc@{snap}"])
        log("source made: rbd/hsrc with s1..s8")
        src = f"rbd:rbd/hsrc:conf={c1}"
        pipe = lambda conf, n: [["rbd", "-c", c1, "export", "--export-format", "2", "--no-progress", "rbd/hsrc", "-"],  # noqa: E731
                                ["rbd", "-c", conf, "import", "--export-format", "2", "--no-progress", "-", f"rbd/{n}"]]
        history = {  # scenario -> [(tool, conf of the destination, cmds(name))]
            "near": [("rbdcp copy --snapshots all", c2,
                      lambda n: [[rbdcp, "copy", src, f"rbd:rbd/{n}:conf={c2}", "--snapshots", "all", "--no-progress"]]),
                     ("rbd export --export-format 2 | rbd import --export-format 2", c2, lambda n: pipe(c2, n))],
            "far": [("rbdcp copy --snapshots all", c2,
                     lambda n: [[rbdcp, "copy", src, f"rbd:rbd/{n}:conf={far}", "--snapshots", "all", "--no-progress"]]),
                    ("rbd export --export-format 2 | rbd import --export-format 2", c2, lambda n: pipe(far, n))],
            "within": [("rbdcp copy --snapshots all", c1,
                        lambda n: [[rbdcp, "copy", src, f"rbd:rbd/{n}:conf={c1}", "--snapshots", "all", "--no-progress"]]),
                       ("rbd deep cp", c1, lambda n: [["rbd", "-c", c1, "deep", "cp", "--no-progress", "rbd/hsrc", f"rbd/{n}"]])],
        }
        results = {}
        for scen, tools in history.items():
            for tool, conf, cmds in tools:
                timed(cmds("hdst"))
                for snap in SNAPS:
                    if digest(conf, f"rbd/hdst@{snap}") != digest(c1, f"rbd/hsrc@{snap}"):
                        raise SystemExit(f"history.py: {tool} ({scen}): hdst@{snap} differs from its source")
                rm(conf, "hdst")
                log(f"checked {tool} ({scen})")
            for r in range(rounds):
                for tool, conf, cmds in tools[r % 2:] + tools[:r % 2]:
                    results.setdefault((scen, tool), []).append(timed(cmds("hdst")))
                    rm(conf, "hdst")
            log(f"{scen} done")

        # The cut-over: rounds copied everything but a last 32 MiB change, made after them.
        run(["rbd", "-c", c1, "create", "--size", f"{SIZE // MIB}M", "rbd/hmig"])
        made.append((c1, "hmig"))
        apply(c1, "hmig", [(i * 4 * OBJ, rng.randbytes(OBJ)) for i in range(32)])
        for r in range(rounds + 1):
            subprocess.run([rbdcp, "migrate", f"rbd:rbd/hmig:conf={c1}", f"rbd:rbd/hmig:conf={c2}", "--no-progress",
                            "--until-delta", "1M"], check=True, capture_output=True)
            apply(c1, "hmig", [(rng.randrange(SIZE // MIB) * MIB, rng.randbytes(MIB)) for _ in range(32)])
            final = timed([[rbdcp, "migrate", f"rbd:rbd/hmig:conf={c1}", f"rbd:rbd/hmig:conf={c2}", "--final",
                            "--verify", "none", "--no-progress"]])
            full = timed([["rbd", "-c", c1, "export", "--no-progress", "rbd/hmig", "-"],
                          ["rbd", "-c", c2, "import", "--no-progress", "-", "rbd/hfull"]])
            rm(c2, "hfull")
            if r == 0:
                if digest(c2, "rbd/hmig") != digest(c1, "rbd/hmig"):
                    raise SystemExit("history.py: migrate --final: the destination differs from the source")
                log("checked migrate --final")
                continue
            results.setdefault(("cutover", "rbdcp migrate --final"), []).append(final)
            results.setdefault(("cutover", "rbd export | rbd import (full)"), []).append(full)
        rm(c2, "hmig")
        body = report(results, rounds, c1, c2, far)
        out = os.environ.get("BENCH_OUT") or os.path.join(REPO, "BENCHMARKS.md")
        if out == "-":
            print(body)
        else:
            benchlib.splice_section(out, "history", body)
            log(f"wrote {out}")
        return 0
    finally:
        for conf, img in made:
            rm(conf, img)
        shutil.rmtree(work, ignore_errors=True)


def med(runs, i):
    return statistics.median(x[i] for x in runs)


def report(results, rounds, c1, c2, far):
    lines = [
        "## Snapshot histories and cut-overs (`bench/history.py`)",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {rounds} timed rounds after one checked "
        "warm-up run per tool (each of s1..s8 on the destination gives the same `rbd export-diff` stream as the "
        "source's), the two tools alternating; each run into a fresh image, removed after it.",
        "- Source `rbd/hsrc` on cluster 1: 512 MiB, s1 holding 128 MiB (32 objects of 4 MiB), s2..s8 each 8 MiB "
        "more in 128 writes of 64 KiB. 8 snapshots in all.",
        f"- Commands (C1 = `{c1}`, C2 = `{c2}`, far = `{far}`): `rbdcp copy rbd:rbd/hsrc:conf=C1 "
        "rbd:rbd/DST:conf=C2 --snapshots all`; `rbd -c C1 export --export-format 2 rbd/hsrc - | rbd -c C2 import "
        "--export-format 2 - rbd/DST`; within cluster 1 `rbd deep cp rbd/hsrc rbd/DST`. Cut-over: `rbd/hmig` "
        "(128 MiB) is migrated in untimed rounds (`rbdcp migrate ... --until-delta 1M`), then 32 MiB is written "
        "(32 writes of 1 MiB) and the timed `rbdcp migrate ... --final --verify none` copies it; against it, a full "
        "`rbd -c C1 export rbd/hmig - | rbd -c C2 import - rbd/FULL`, the time that way keeps the writer stopped.",
        "- Wall seconds (median), peak RSS of the largest process (median, MiB), client CPU seconds (median).",
        "",
        "| scenario | tool | seconds | ratio to rbdcp | RSS MiB | CPU s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by = {}
    for (scen, tool), runs in results.items():
        by.setdefault(scen, []).append((tool, runs))
    for scen, tools in by.items():
        ref = med(tools[0][1], 0)
        for tool, runs in tools:
            cell = tool.replace("|", "\\|")
            lines.append(f"| {scen} | {cell} | {med(runs, 0):.3f} | {med(runs, 0) / ref:.2f} | "
                         f"{med(runs, 1):.1f} | {med(runs, 2):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
