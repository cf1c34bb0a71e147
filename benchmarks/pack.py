"""Benchmark: pack a generated model and compare with the floor of one read+hash+write pass.

Prints wall time and peak memory (RSS of the child process doing the work) for
1. the floor: read every byte once, sha256 it, write it to a file in the store's file system;
2. the first pack (``kitflow.pack`` into an empty store);
3. a re-pack of unchanged content (the stat cache should make it a small fraction);
4. a re-pack after a code-only change.
Ratios are printed against the floor and against the first pack. Targets (issue 2): first pack
within 1.3x of the floor, peak memory < 150 MB, re-pack < 0.2x of the first pack.

Usage: python benchmarks/pack.py [--size 1G] [--files 4] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

FLOOR = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    src, out = sys.argv[1], sys.argv[2]
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    t0 = time.monotonic()
    c0 = time.process_time()
    h = hashlib.sha256()
    with open(out, "wb", buffering=0) as dst:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(files):
                with open(os.path.join(root, name), "rb", buffering=0) as f:
                    while True:
                        n = f.readinto(buf)
                        if not n:
                            break
                        h.update(view[:n])
                        dst.write(view[:n])
    seconds = time.monotonic() - t0
    cpu = time.process_time() - c0
    os.unlink(out)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "digest": h.hexdigest()}))
    """
)

PACK = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.monotonic()
    from kitflow.ops.pack import pack
    t1 = time.monotonic()
    c1 = time.process_time()
    r = pack(sys.argv[1], tag=sys.argv[3], home=sys.argv[2])
    t2 = time.monotonic()
    cpu = time.process_time() - c1
    print(json.dumps({"seconds": t2 - t1, "cpu": cpu, "bytes_read": r.bytes_read,
                      "digest": r.digest, "size": r.size}))
    """
)


def parse_size(text: str) -> int:
    """``1G``, ``512M``, ``300K`` or a plain number of bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def run_child(script: str, *args: str) -> tuple[dict[str, float], float]:
    """Run ``script`` in a fresh interpreter; returns its JSON output and peak RSS in MiB.

    Dirty pages of earlier steps are flushed first so no step pays for another's writeback.
    """
    os.sync()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {script[:60]}...")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024  # KiB on Linux


def generate(ctx: Path, size: int, files: int) -> None:
    """A model directory of ``files`` weight files totalling ``size`` bytes, plus a little code."""
    (ctx / "model").mkdir(parents=True)
    (ctx / "src").mkdir()
    block = os.urandom(16 << 20)
    per_file = size // files
    for i in range(files):
        todo = per_file + (size - per_file * files if i == files - 1 else 0)
        with open(ctx / "model" / f"weights-{i:02d}.bin", "wb") as fh:
            n = 0
            while todo:
                piece = block[: min(todo, len(block))]
                fh.write(n.to_bytes(8, "little") + piece[8:])
                todo -= len(piece)
                n += 1
    (ctx / "src" / "predict.py").write_text("def predict(model, records):\n    return records\n")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: bench\nmodel:\n  name: bench\n"
        "  path: model\ncode:\n  - path: src\n"
    )
    past = time.time() - 5
    for root, dirs, names in os.walk(ctx):
        for name in dirs + names:
            os.utime(os.path.join(root, name), (past, past))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="model size (default 1G)")
    parser.add_argument("--files", type=int, default=4, help="number of weight files")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median is reported)")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    size = parse_size(args.size)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="kitflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        ctx = work / "ctx"
        print(f"generating {size / (1 << 20):.0f} MiB in {args.files} files under {work} ...")
        generate(ctx, size, args.files)
        floors, packs, repacks, code_changes = [], [], [], []
        floor_cpu, pack_cpu = [], []
        peak_pack = 0.0
        run_child(FLOOR, str(ctx), str(work / "warmup.tmp"))  # untimed: warm the page cache
        for run in range(args.runs):
            home = work / f"home{run}"
            home.mkdir()
            floor, _ = run_child(FLOOR, str(ctx), str(home / "floor.tmp"))
            floors.append(floor["seconds"])
            floor_cpu.append(floor["cpu"])
            first, rss = run_child(PACK, str(ctx), str(home), "bench:first")
            packs.append(first["seconds"])
            pack_cpu.append(first["cpu"])
            peak_pack = max(peak_pack, rss)
            time.sleep(0.2)
            again, rss = run_child(PACK, str(ctx), str(home), "bench:again")
            repacks.append(again["seconds"])
            peak_pack = max(peak_pack, rss)
            assert again["bytes_read"] == 0, "re-pack read content"
            assert again["digest"] == first["digest"]
            code = ctx / "src" / "predict.py"
            code.write_text(code.read_text() + f"# run {run}\n")
            past = time.time() - 5
            os.utime(code, (past, past))
            changed, rss = run_child(PACK, str(ctx), str(home), "bench:code")
            code_changes.append(changed["seconds"])
            peak_pack = max(peak_pack, rss)
            shutil.rmtree(home)
            floor, _ = run_child(FLOOR, str(ctx), str(work / "floor-after.tmp"))
            floors.append(floor["seconds"])
            floor_cpu.append(floor["cpu"])
        floor_s = statistics.median(floors)
        pack_s = statistics.median(packs)
        repack_s = statistics.median(repacks)
        code_s = statistics.median(code_changes)
        gib = size / (1 << 30)
        print(f"model size                 {gib:.2f} GiB ({args.files} files), {args.runs} runs")
        print(
            f"floor read+hash+write      {floor_s:7.2f} s  ({gib / floor_s:.2f} GiB/s)"
            f"  [runs: {', '.join(f'{f:.2f}' for f in floors)}]"
        )
        print(
            f"first pack                 {pack_s:7.2f} s  ratio to floor {pack_s / floor_s:.2f}x"
            f"  (target <= 1.3x)  [runs: {', '.join(f'{p:.2f}' for p in packs)}]"
        )
        fcpu, pcpu = statistics.median(floor_cpu), statistics.median(pack_cpu)
        print(
            f"CPU time floor / pack      {fcpu:7.2f} s / {pcpu:.2f} s  ratio {pcpu / fcpu:.2f}x"
            "  (steadier than wall time on a busy machine)"
        )
        print(
            f"re-pack, unchanged         {repack_s:7.3f} s  ratio to first pack "
            f"{repack_s / pack_s:.3f}x  (target < 0.2x)"
        )
        print(
            f"re-pack, code change only  {code_s:7.3f} s  ratio to first pack "
            f"{code_s / pack_s:.3f}x"
        )
        print(f"peak RSS of pack process   {peak_pack:7.1f} MiB  (target < 150 MB)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
