"""Data pipeline at ImageNet 32x32 scale: peak resident memory and batches/s.

A synthetic 32x32x3 uint8 dataset (numpy random, generated on the fly) goes through
  * uint8:   the in-memory path (holoeb.data.pipeline.Dataset: raw uint8 held, each
             batch shuffled, gathered, flipped, normalised on its own), n = 1.28M (3.9 GB);
  * +prefetch: the same with the background thread and jax.device_put (as `holoeb train`);
  * stream:  StreamDataset over a generator of uint8 chunks (nothing held but the
             shuffle buffer), n = 1.28M;
  * float32 (old): the former path, prepare_images on the whole split then slicing
             prepared batches, at a smaller n (it would not fit at 1.28M), with its
             memory above the interpreter's extrapolated linearly to 1.28M.
Each row runs in a fresh subprocess; peak RSS is its ru_maxrss (includes python + numpy
+ jax, the "base" column: RSS after imports).

    python experiments/benchmark_data.py [--n 1281167] [--old-n 100000] [--batches 400] [--batch-size 256]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHAPE = (32, 32, 3)


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _synthetic(n, chunk=50_000, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        yield rng.integers(0, 256, (k,) + SHAPE, dtype=np.uint8), rng.integers(0, 1000, k).astype(np.int32)


def _held(n):
    import numpy as np

    images, labels = np.empty((n,) + SHAPE, np.uint8), np.empty((n,), np.int32)
    i = 0
    for x, y in _synthetic(n):
        images[i : i + len(y)], labels[i : i + len(y)] = x, y
        i += len(y)
    return images, labels


def row(kind, n, num_batches, bs):
    import holoeb  # noqa: F401
    import jax
    import numpy as np

    from holoeb.data.pipeline import Augmentation, Dataset, StreamDataset, batches, make_preparation, prefetch

    base = _rss_mb()
    t0 = time.perf_counter()
    augment = Augmentation(lambda i: np.random.default_rng((0, 1, i)), flip=True)
    if kind in ("uint8", "uint8+prefetch"):
        images, labels = _held(n)
        ds = Dataset.from_images(images, labels, SHAPE, MEAN, STD)
        it = batches(ds, bs, np.random.default_rng(0), augment=augment)
        if kind == "uint8+prefetch":
            it = prefetch(it, transform=jax.device_put)
    elif kind == "stream":
        prep = make_preparation(SHAPE, MEAN, STD)
        ds = StreamDataset(lambda seed: _synthetic(n, chunk=1024, seed=seed or 0), n, prep, buffer_size=10_000)
        it = prefetch(batches(ds, bs, np.random.default_rng(0), augment=augment), transform=jax.device_put)
    elif kind == "float32 (old)":
        images, labels = _held(n)
        x = images.astype(np.float32) / 255.0  # the former load_dataset (prepare_images before this change)
        x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
        del images
        ds = Dataset(x, labels, SHAPE)
        it = batches(ds, bs, np.random.default_rng(0), augment=augment)
    else:
        raise ValueError(kind)
    setup = time.perf_counter() - t0
    num_batches = min(num_batches, n // bs - 1)
    b = next(it)  # first batch (shuffle permutation / buffer fill) not timed
    t0 = time.perf_counter()
    for _ in range(num_batches):
        b = next(it)
    jax.block_until_ready(b.x)
    rate = num_batches / (time.perf_counter() - t0)
    return {"kind": kind, "n": n, "timed_batches": num_batches, "setup_s": setup, "batches_per_s": rate, "examples_per_s": rate * bs,
            "base_mb": base, "peak_mb": _rss_mb()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--old-n", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--json", default=None)
    ap.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: one row in this process
    ap.add_argument("--row-n", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row:
        print(json.dumps(row(args.row, args.row_n, args.batches, args.batch_size)))
        return
    plan = [("float32 (old)", args.old_n), ("uint8", args.old_n), ("uint8", args.n), ("uint8+prefetch", args.n),
            ("stream", args.n)]
    rows = []
    for kind, n in plan:
        cmd = [sys.executable, os.path.abspath(__file__), "--row", kind, "--row-n", str(n),
               "--batches", str(args.batches), "--batch-size", str(args.batch_size)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"row {kind} n={n} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  done {kind:15s} n={n}: peak {r['peak_mb']:.0f} MB, {r['batches_per_s']:.0f} batches/s", file=sys.stderr)
    old = rows[0]
    extra = (old["peak_mb"] - old["base_mb"]) * args.n / old["n"]
    rows.append({"kind": "float32 (old), extrapolated", "n": args.n, "setup_s": old["setup_s"] * args.n / old["n"],
                 "batches_per_s": float("nan"), "examples_per_s": float("nan"), "base_mb": old["base_mb"],
                 "peak_mb": old["base_mb"] + extra})
    print(f"batch {args.batch_size}, 32x32x3 uint8 source, mean/std normalisation + random flips, "
          f"{args.batches} timed batches; CPU count {os.cpu_count()}")
    print(f"{'path':30s} {'n':>9s} {'setup s':>8s} {'peak RSS MB':>12s} {'base MB':>8s} {'batches/s':>10s} {'examples/s':>11s}")
    for r in rows:
        print(f"{r['kind']:30s} {r['n']:9d} {r['setup_s']:8.1f} {r['peak_mb']:12.0f} {r['base_mb']:8.0f} "
              f"{r['batches_per_s']:10.0f} {r['examples_per_s']:11.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
