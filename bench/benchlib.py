#!/usr/bin/env python3
"""Helpers for bench/local.sh (stdlib only, Python >= 3.9).

Subcommands:
  make OUT SIZE DATA SEED     sparse raw image: DATA bytes of incompressible
                              pseudo-random data in scattered extents of
                              64 KiB..4 MiB (4 KiB aligned), rest holes.
                              Deterministic for a given SIZE/DATA/SEED.
  sparse-cmp A B              byte-compare two (sparse) files using
                              SEEK_DATA/SEEK_HOLE, so a 1 TiB image with little
                              data compares in seconds. Exit 1 on difference.
  table IMAGE DATA_BYTES TSV  markdown table for one image from the results TSV
                              (image, tool, round, seconds, maxrss_kib, ...).
  verdict TSV                 one line: do the targets hold?  Exit status 0 if
                              they do, 3 if not.
  splice FILE SECTION         replace the text between <!-- local:begin --> and
                              <!-- local:end --> in FILE with SECTION's content
                              (create FILE if missing).
"""

import os
import random
import statistics
import sys

KIB = 1024
MIB = 1024 * KIB
ALIGN = 4 * KIB
MIN_EXT = 64 * KIB
MAX_EXT = 4 * MIB
REF = "rbdcp"  # the tool every ratio is relative to
RSS_LIMIT_MIB = 100


def parse_size(s):
    s = s.strip()
    units = {"K": KIB, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}
    if s[-1:].upper() in units:
        return int(s[:-1]) * units[s[-1:].upper()]
    return int(s)


def plan_extents(size, data, rng):
    """Return sorted, non-overlapping (offset, length) extents summing to data."""
    if data % ALIGN or size % ALIGN:
        sys.exit("size and data must be multiples of 4 KiB")
    if data > size:
        sys.exit("data larger than image")
    lengths = []
    left = data
    while left > 0:
        n = rng.randrange(MIN_EXT // ALIGN, MAX_EXT // ALIGN + 1) * ALIGN
        n = min(n, left)
        lengths.append(n)
        left -= n
    # Split the free space into len(lengths)+1 gaps with random weights.
    free_units = (size - data) // ALIGN
    weights = [rng.random() for _ in range(len(lengths) + 1)]
    total = sum(weights)
    gaps = [int(free_units * w / total) for w in weights]
    gaps[-1] += free_units - sum(gaps)  # rounding remainder goes to the tail
    extents = []
    off = 0
    for gap, n in zip(gaps, lengths):
        off += gap * ALIGN
        extents.append((off, n))
        off += n
    assert off + gaps[-1] * ALIGN == size
    return extents


def cmd_make(out, size, data, seed):
    size, data, seed = parse_size(size), parse_size(data), int(seed)
    rng = random.Random(seed)
    extents = plan_extents(size, data, rng)
    tmp = out + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for off, n in extents:
            buf = rng.randbytes(n)
            done = 0
            while done < n:
                done += os.pwrite(fd, buf[done:], off + done)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, out)
    print(f"{out}: {size} bytes, {data} bytes of data in {len(extents)} extents"
          f" (seed {seed})")


def data_segments(fd, size):
    """Yield (start, end) of data segments per SEEK_DATA/SEEK_HOLE."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def merge(segs):
    out = []
    for s, e in sorted(segs):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def cmd_sparse_cmp(a, b):
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
    if sa != sb:
        print(f"sparse-cmp: size differs: {a} {sa} != {b} {sb}", file=sys.stderr)
        return 1
    # Outside the union of both files' data segments both read as zeros.
    segs = merge(list(data_segments(fa, sa)) + list(data_segments(fb, sb)))
    checked = 0
    for s, e in segs:
        pos = s
        while pos < e:
            n = min(8 * MIB, e - pos)
            if os.pread(fa, n, pos) != os.pread(fb, n, pos):
                print(f"sparse-cmp: {a} {b} differ in [{pos}, {pos + n})",
                      file=sys.stderr)
                return 1
            pos += n
            checked += n
    print(f"sparse-cmp: identical ({checked} bytes in {len(segs)} data"
          f" segments compared, rest holes in both)")
    return 0


def load(tsv):
    runs = {}
    order = []
    with open(tsv) as f:
        for line in f:
            image, tool, _rnd, secs, rss = line.split()[:5]
            key = (image, tool)
            if key not in runs:
                runs[key] = []
                order.append(key)
            runs[key].append((float(secs), int(rss)))
    return runs, order


def summary(runs, image, tool):
    r = runs[(image, tool)]
    secs = [s for s, _ in r]
    return {
        "n": len(secs),
        "median": statistics.median(secs),
        "min": min(secs),
        "max": max(secs),
        "rss_mib": max(m for _, m in r) / 1024,
    }


def cmd_table(image, data_bytes, tsv):
    data_bytes = int(data_bytes)
    runs, order = load(tsv)
    tools = [t for (i, t) in order if i == image]
    ref = summary(runs, image, REF)["median"] if (image, REF) in runs else None
    print(f"| tool | runs | median s | min s | max s | time ratio to {REF}"
          f" (tool median / {REF} median) | median MB/s of data | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in tools:
        s = summary(runs, image, t)
        ratio = f"{s['median'] / ref:.2f}" if ref else "n/a"
        mbps = data_bytes / 1e6 / s["median"] if s["median"] > 0 else float("inf")
        print(f"| {t} | {s['n']} | {s['median']:.3f} | {s['min']:.3f} |"
              f" {s['max']:.3f} | {ratio} | {mbps:.0f} | {s['rss_mib']:.1f} |")
    return 0


def cmd_verdict(tsv):
    runs, order = load(tsv)
    images = []
    for i, _ in order:
        if i not in images:
            images.append(i)
    speed_ok = True
    parts = []
    for image in images:
        if (image, REF) not in runs:
            continue
        ref = summary(runs, image, REF)["median"]
        for (i, t) in order:
            if i != image or t == REF:
                continue
            ratio = summary(runs, image, t)["median"] / ref if ref > 0 else float("inf")
            speed_ok &= ratio >= 1.0
            parts.append(f"{image} {t} {ratio:.2f}")
    rss = max(summary(runs, i, REF)["rss_mib"] for i in images if (i, REF) in runs)
    rss_ok = rss < RSS_LIMIT_MIB
    ok = speed_ok and rss_ok
    print(f"**Targets {'hold' if ok else 'DO NOT hold'}:** speed"
          f" {'met' if speed_ok else 'MISSED'} ({REF} at least as fast as the"
          f" fastest other tool on each image, i.e. every time ratio >= 1.0:"
          f" {'; '.join(parts)}); memory {'met' if rss_ok else 'MISSED'}"
          f" ({REF} peak RSS {rss:.1f} MiB, need < {RSS_LIMIT_MIB} MiB).")
    return 0 if ok else 3


def splice_section(path, section, body):
    """Replace the text between <!-- SECTION:begin --> and <!-- SECTION:end --> in PATH with
    BODY (append the section if the markers are missing; create PATH if it is missing)."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if begin in text and end in text and text.index(begin) < text.index(end):
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = ("# Benchmarks\n\nGenerated by the scripts under `bench/` (`make bench`). Each script owns the "
                "section between its `<!-- NAME:begin -->` and `<!-- NAME:end -->` markers; do not edit those "
                "by hand.\n\n" + block + "\n")
    tmp = f"{path}.{section}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_splice(path, section_file):
    with open(section_file) as f:
        body = f.read().rstrip("\n")
    splice_section(path, "local", body)
    return 0


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "make" and len(args) == 4:
        cmd_make(*args)
        return 0
    if cmd == "sparse-cmp" and len(args) == 2:
        return cmd_sparse_cmp(*args)
    if cmd == "table" and len(args) == 3:
        return cmd_table(*args)
    if cmd == "verdict" and len(args) == 1:
        return cmd_verdict(*args)
    if cmd == "splice" and len(args) == 2:
        return cmd_splice(*args)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
