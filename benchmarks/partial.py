"""Initializing only what a checkpoint lacks: ``init_tree(key, specs, existing=checkpoint)`` against a full
``init_tree`` then overlaying the checkpoint, side by side, in one run.

The model is the GPT-2-shaped float32 tree of benchmarks/init_tree.py (XL: 48 blocks, width 1600, 1.56 B
parameters, by default; small with `--small`) with a new untied head (``head/kernel`` of (width, 50257) and
``head/bias``). The checkpoint lacks the head and every tenth other leaf (in the tree's order): about 10 % of the
leaves. It is "restored" before timing starts (filled NumPy buffers moved to JAX arrays), so the process
holds it when each method starts, as after a restore.

Each method runs in a fresh process (persistent compilation cache off) that reports its first call's time
(compile included), the median of 3 warm calls, its peak RSS (``VmHWM``) and its growth (the peak less the RSS
just before the method, the checkpoint included in both), and a BLAKE2b digest of the leaves the checkpoint
lacks, which must be the same for both:

- `init then overlay` (the anchor): ``jinit.init_tree(key, specs)``, then each leaf of the checkpoint put in
  place of its fresh twin (the twins are dropped);
- `init what is missing`: ``jinit.init_tree(key, specs, existing=checkpoint)``.

Run it from the repository root (about 2 minutes on a slow 2-core CPU, 14 GB of memory for the anchor;
`--small` about 20 s):

    .venv/bin/python benchmarks/partial.py
    .venv/bin/python benchmarks/partial.py --small
"""

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from typing import Any

import init_tree
from init_tree import SIZES, VOCAB, gpt2, is_entry, rss

METHODS = ("init then overlay", "init what is missing")
REPEATS = 3  # warm calls, of which the median is reported
EVERY = 10  # the checkpoint lacks every EVERY-th leaf of the tree (and the new head)


def model(size):
    """The GPT-2 tree of `size` with a new head: `{name: (shape, initializer name, stddev)}`."""
    blocks, width = SIZES[size]
    tree = gpt2(blocks, width)
    tree["head"] = {"kernel": ((width, VOCAB), "normal", 0.02), "bias": ((VOCAB,), "zeros", None)}
    return tree


def child(method, size):
    import jax
    import numpy as np

    import jinit

    entries, treedef = jax.tree.flatten(model(size), is_leaf=is_entry)
    paths = [jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in
             jax.tree_util.tree_flatten_with_path(model(size), is_leaf=is_entry)[0]]  # fmt: skip
    inits = {"normal": jinit.normal, "zeros": lambda _: jinit.zeros, "ones": lambda _: jinit.ones}
    specs = jax.tree.unflatten(treedef, [jinit.ParamSpec(shape, inits[n](s)) for shape, n, s in entries])
    lacking = {i for i, path in enumerate(paths) if i % EVERY == EVERY - 1 or path.startswith("head/")}
    # the checkpoint: its own values, in memory before the method starts (as after a restore)
    restored = [None if i in lacking else jax.numpy.asarray(np.full(shape, 0.5, np.float32))
                for i, (shape, _, _) in enumerate(entries)]  # fmt: skip
    checkpoint = jax.tree.unflatten(treedef, restored)
    jax.block_until_ready(checkpoint)
    key = jax.random.key(0)
    result: dict[str, Any] = {"start_rss": rss("VmRSS")}

    if method == "init then overlay":

        def run():
            full = jinit.init_tree(key, specs)
            return jax.tree.map(lambda c, f: f if c is None else c, checkpoint, full, is_leaf=lambda x: x is None)
    else:

        def run():
            return jinit.init_tree(key, specs, existing=checkpoint)

    start = time.perf_counter()
    out = jax.block_until_ready(run())
    result["first_s"] = time.perf_counter() - start
    result["rss"] = rss()
    leaves = jax.tree.leaves(out)
    assert all(leaves[i] is restored[i] for i in range(len(leaves)) if i not in lacking)  # passed through
    digest = hashlib.blake2b(digest_size=16)
    for i in sorted(lacking):
        digest.update(np.asarray(leaves[i]).tobytes())
    result["digest"] = digest.hexdigest()
    del out, leaves
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
        del out
    result["warm_s"] = statistics.median(times)
    result["bytes"] = sum(math.prod(shape) * 4 for shape, _, _ in entries)
    result["missing_bytes"] = sum(math.prod(entries[i][0]) * 4 for i in lacking)
    result["leaves"], result["missing"] = len(entries), len(lacking)
    print(json.dumps(result))


def measure(method, size):
    return init_tree.measure(method, size, script=__file__)


def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="GPT-2 small (124 M parameters) instead of XL")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=SIZES, default="xl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.size)
    size = "small" if args.small else "xl"
    r = {}
    for method in METHODS:
        r[method] = measure(method, size)
        print(f"  measured {method}", file=sys.stderr)
    anchor, ours = r[METHODS[0]], r[METHODS[1]]
    blocks, width = SIZES[size]
    print(
        f"GPT-2 {size.upper()}-shaped tree with a new head: {blocks} blocks, width {width}, {ours['leaves']} leaves, "
        f"{ours['bytes'] / 1e9:.2f} GB of float32 parameters; the checkpoint lacks {ours['missing']} leaves "
        f"({ours['missing_bytes'] / 1e9:.2f} GB)\n"
    )
    print(f"{'method':22} {'first s':>8} {'warm s':>8} {'peak RSS GB':>12} {'growth GB':>10}")
    for method in METHODS:
        m = r[method]
        growth = (m["rss"] - m["start_rss"]) / 1e9
        print(f"{method:22} {m['first_s']:8.2f} {m['warm_s']:8.2f} {m['rss'] / 1e9:12.2f} {growth:10.2f}")
    print(f"\n{'missing / overlay':22} {'ratio':>8}")
    for name, field in [("first call", "first_s"), ("warm call", "warm_s"), ("peak RSS", "rss")]:
        print(f"{name:22} {ours[field] / anchor[field]:8.2f}")
    grown = (ours["rss"] - ours["start_rss"]) / (anchor["rss"] - anchor["start_rss"])
    print(f"{'RSS growth':22} {grown:8.2f}")
    same = ours["digest"] == anchor["digest"]
    print(f"\nthe missing leaves are bitwise the same in both: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
