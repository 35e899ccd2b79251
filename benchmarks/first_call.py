"""First-call and warm timings of jinit against `jax.nn.initializers`, side by side, on realistic shapes.

What it measures, for each initializer (glorot_uniform, normal, truncated_normal, he_normal, orthogonal) and
each library:

- first call: the time of ``init(key, shape).block_until_ready()`` the first time a process sees `shape`. For
  `jax.nn.initializers` this includes compiling the sampler for that shape; jinit draws an eager sample with
  kernels compiled per distribution, dtype and size (see `jinit._src.engine`), so a new shape compiles at most
  a kernel of a new size. Those compilations are counted in the first calls, which only the mean (not the
  median) shows.
- warm: the median of `--repeats` further calls on the same shape (fewer, but at least 3, once they have
  taken 0.5 s: the largest shapes need no more), after each shape's first call in that process.

First calls run in a fresh subprocess per (library, initializer) with the persistent compilation cache off, so
no compiled program leaks from one measurement to another. A process first warms its library up on one
unrelated shape (so imports and one-time costs are not counted), then measures each shape in turn. Warm calls
run in one more process that alternates the two libraries call by call, so that the load of a shared machine
weighs on both alike. Every shape's result is hashed, and jinit's must be bitwise equal to JAX's, or the
script fails.

The first-call ratio is the ratio of the mean first-call times (the total time to initialize all the shapes);
the warm ratio is the geometric mean over shapes of jinit's warm median over JAX's (the table also shows the
ratio of the summed warm times, which the largest shapes dominate). Targets: first-call ratio
<= 0.25 and warm ratio <= 1.0. `orthogonal` compiles a QR for each shape in both libraries, so its first-call
ratio is expected to be about 1 and has no target; it runs on at most 10 shapes of at most 0.6 M elements, whose
QR does not swamp the run time.

With `--quick` (8 shapes) the few one-time chunk compilations weigh about four times as much in jinit's mean
first call as with the default 30 shapes.

Run it from the repository root (about 2 minutes on a slow 2-core CPU; `--quick` about 40 s):

    .venv/bin/python benchmarks/first_call.py
    .venv/bin/python benchmarks/first_call.py --quick --per-shape
"""

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

WARMUP_SHAPE = (17, 19)

# Realistic parameter shapes, all distinct: (shape, kind), kind one of "kernel", "bias" or "embedding".
POOL = (
    ((768, 3072), "kernel"),  # GPT-2 small MLP
    ((3072,), "bias"),
    ((3072, 768), "kernel"),
    ((768, 2304), "kernel"),  # GPT-2 small attention (q, k, v)
    ((2304,), "bias"),
    ((768, 768), "kernel"),
    ((1024, 4096), "kernel"),  # GPT-2 medium / BERT large MLP
    ((4096,), "bias"),
    ((4096, 1024), "kernel"),
    ((1024, 1024), "kernel"),
    ((1024,), "bias"),
    ((50257, 768), "embedding"),  # GPT-2 token embedding, for `normal` only
    ((512, 2048), "kernel"),  # Transformer base
    ((2048,), "bias"),
    ((2048, 512), "kernel"),
    ((512, 512), "kernel"),
    ((512,), "bias"),
    ((384, 1536), "kernel"),  # ViT-S
    ((1536, 384), "kernel"),
    ((384, 1152), "kernel"),
    ((16, 16, 3, 384), "kernel"),  # ViT-S patch embedding
    ((7, 7, 3, 64), "kernel"),  # ResNet stem
    ((3, 3, 64, 64), "kernel"),  # ResNet / VGG convolutions
    ((3, 3, 64, 128), "kernel"),
    ((3, 3, 128, 128), "kernel"),
    ((3, 3, 128, 256), "kernel"),
    ((3, 3, 256, 256), "kernel"),
    ((3, 3, 256, 512), "kernel"),
    ((1, 1, 256, 64), "kernel"),  # ResNet bottleneck
    ((1, 1, 64, 256), "kernel"),
    ((1, 1, 512, 2048), "kernel"),
    ((2048, 1000), "kernel"),  # ResNet-50 classifier
    ((1000,), "bias"),
    ((5, 5, 32, 64), "kernel"),
    ((784, 256), "kernel"),  # MNIST MLP
    ((256, 10), "kernel"),
    ((1024, 3072), "kernel"),
    ((3, 3, 3, 64), "kernel"),
    ((256, 1024), "kernel"),
    ((128, 512), "kernel"),
    ((256,), "bias"),
    ((300, 1200), "kernel"),  # LSTM on 300-d word vectors
    ((1, 1, 128, 512), "kernel"),
    ((1, 1, 1024, 256), "kernel"),
    ((512, 1000), "kernel"),  # ResNet-18 classifier
    ((64, 256), "kernel"),
    ((1280, 5120), "kernel"),  # GPT-2 large MLP
)


class Spec(NamedTuple):
    arguments: tuple  # the factory's positional arguments
    kinds: frozenset[str]  # the kinds of shape it initializes
    targeted: bool = True  # whether the first-call target applies
    largest: float = math.inf  # the largest size it runs on
    most: int = len(POOL)  # the most shapes it runs on


# orthogonal's QR dominates the run time and says nothing about jinit: it runs on at most 10 smaller shapes.
INITIALIZERS = {
    "glorot_uniform": Spec((), frozenset({"kernel"})),
    "normal": Spec((0.02,), frozenset({"kernel", "bias", "embedding"})),
    "truncated_normal": Spec((0.02,), frozenset({"kernel", "bias"})),
    "he_normal": Spec((), frozenset({"kernel"})),
    "orthogonal": Spec((), frozenset({"kernel"}), targeted=False, largest=6e5, most=10),
}
MIN_REPEATS, WARM_BUDGET_S = 3, 0.5  # warm calls stop after `--repeats`, or after this much time
FIRST_CALL_TARGET = 0.25
WARM_TARGET = 1.0


def shapes_for(name: str, count: int) -> list[tuple[int, ...]]:
    """The first `count` shapes of the pool that initializer `name` takes (no more than its `most`)."""
    spec = INITIALIZERS[name]
    count = min(count, spec.most)
    shapes = [shape for shape, kind in POOL if kind in spec.kinds and math.prod(shape) <= spec.largest][:count]
    assert len(set(shapes)) == len(shapes) and WARMUP_SHAPE not in shapes
    if len(shapes) < count:
        raise SystemExit(f"`--shapes` must be at most {len(shapes)} for {name}. Received: --shapes={count}")
    return shapes


def _initializer(library: str, name: str):
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    if library == "jinit":
        import jinit as module
    else:
        module = jax.nn.initializers
    return getattr(module, name)(*INITIALIZERS[name].arguments)


def first_call_worker(library: str, name: str, shapes: list[tuple[int, ...]]) -> dict:
    """Runs in a fresh process: times `library`'s first call on each shape; returns times and hashes."""
    import jax
    import numpy as np

    init = _initializer(library, name)
    key = jax.random.key(0)
    init(key, WARMUP_SHAPE).block_until_ready()
    first, digests = [], []
    for shape in shapes:
        start = time.perf_counter()
        x = init(key, shape).block_until_ready()
        first.append(time.perf_counter() - start)
        array = np.ascontiguousarray(np.asarray(x))
        digests.append(f"{array.dtype}{array.shape}:{hashlib.blake2b(array.data).hexdigest()}")
        del x, array
    return {"first": first, "digests": digests, "device": str(jax.devices()[0])}


def warm_worker(name: str, shapes: list[tuple[int, ...]], repeats: int) -> dict:
    """Runs in a fresh process: warm calls of both libraries on each shape, interleaved so that the load of
    this shared machine weighs on both alike; returns each library's median per shape."""
    import jax

    inits = {library: _initializer(library, name) for library in ("jax", "jinit")}
    key = jax.random.key(0)
    for shape in shapes:
        for init in inits.values():
            init(key, shape).block_until_ready()
    warm: dict[str, list[float]] = {library: [] for library in inits}
    for shape in shapes:
        times: dict[str, list[float]] = {library: [] for library in inits}
        while len(times["jinit"]) < repeats and (
            len(times["jinit"]) < MIN_REPEATS or sum(times["jinit"]) + sum(times["jax"]) < 2 * WARM_BUDGET_S
        ):
            order = list(inits) if len(times["jinit"]) % 2 else list(reversed(inits))
            for library in order:
                start = time.perf_counter()
                inits[library](key, shape).block_until_ready()
                times[library].append(time.perf_counter() - start)
        for library in inits:
            warm[library].append(statistics.median(times[library]))
    return warm


def measure(request: dict) -> dict:
    """A worker in a fresh Python process, with no persistent compilation cache."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    command = [sys.executable, __file__, "--worker", json.dumps(request)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{request} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def summarize(name: str, jax_result: dict, jinit_result: dict) -> dict:
    """One row of the table: means, medians and ratios of the two libraries' times."""
    theirs, ours = jax_result, jinit_result
    row = {"name": name, "n": len(ours["first"]), "targeted": INITIALIZERS[name].targeted}
    for label, result in (("jax", theirs), ("jinit", ours)):
        row[f"{label}_first_mean"] = statistics.fmean(result["first"]) * 1e3
        row[f"{label}_first_median"] = statistics.median(result["first"]) * 1e3
        row[f"{label}_warm_median"] = statistics.median(result["warm"]) * 1e6
    row["first_ratio"] = row["jinit_first_mean"] / row["jax_first_mean"]
    row["warm_ratio"] = geometric_mean([a / b for a, b in zip(ours["warm"], theirs["warm"], strict=True)])
    row["warm_total_ratio"] = sum(ours["warm"]) / sum(theirs["warm"])
    row["met"] = (row["first_ratio"] <= FIRST_CALL_TARGET or not row["targeted"]) and row["warm_ratio"] <= WARM_TARGET
    return row


def print_table(rows: list[dict], repeats: int, device: str) -> None:
    calls = f"{MIN_REPEATS} to {repeats} warm calls per shape"
    print(f"\nDevice: {device}; {calls}; every result is bitwise equal to JAX's.")
    print("First call in ms, warm median in µs; ratios are jinit / JAX.")
    print(f"{'':21} {'first call, ms':-^48}  {'warm, µs':-^37}")
    print(
        f"{'initializer':17} {'n':>3} {'mean JAX':>8} {'jinit':>7} {'med JAX':>7} {'jinit':>7} {'ratio':>6}"
        f" {'target':>8}  {'med JAX':>8} {'jinit':>6} {'ratio':>6} {'target':>7} {'total':>6}"
    )
    print("-" * 117)
    for r in rows:
        target = f"<= {FIRST_CALL_TARGET}" if r["targeted"] else "~1"
        print(
            f"{r['name']:17} {r['n']:3} {r['jax_first_mean']:8.1f} {r['jinit_first_mean']:7.1f}"
            f" {r['jax_first_median']:7.1f} {r['jinit_first_median']:7.1f} {r['first_ratio']:6.2f} {target:>8}"
            f"  {r['jax_warm_median']:8.0f} {r['jinit_warm_median']:6.0f} {r['warm_ratio']:6.2f}"
            f" {'<= ' + str(WARM_TARGET):>7} {r['warm_total_ratio']:6.2f}  {'met' if r['met'] else 'MISSED'}"
        )
    print(
        "\nFirst-call ratio: of the means (the total time for all shapes). Warm ratio: geometric mean over shapes"
        " of the\nper-shape ratios; total: of the summed warm times. orthogonal compiles a QR for each shape in both"
        " libraries,\nso its first-call ratio is expected to be about 1 (no target)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=30, help="shapes per initializer (default: 30)")
    parser.add_argument("--repeats", type=int, default=15, help="most warm calls per shape (default: 15)")
    parser.add_argument("--quick", action="store_true", help="8 shapes per initializer, at most 5 warm calls")
    parser.add_argument("--initializers", nargs="+", choices=list(INITIALIZERS), default=list(INITIALIZERS))
    parser.add_argument("--per-shape", action="store_true", help="also print every shape's timings")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        request = json.loads(args.worker)
        shapes = [tuple(shape) for shape in request["shapes"]]
        if request["library"] == "both":
            print(json.dumps(warm_worker(request["name"], shapes, request["repeats"])))
        else:
            print(json.dumps(first_call_worker(request["library"], request["name"], shapes)))
        return
    count, repeats = (8, 5) if args.quick else (args.shapes, args.repeats)

    rows, device, started = [], "", time.perf_counter()
    for name in args.initializers:
        shapes = shapes_for(name, count)
        print(f"Measuring {name} on {len(shapes)} shapes...", file=sys.stderr, flush=True)
        jax_result = measure({"library": "jax", "name": name, "shapes": shapes})
        jinit_result = measure({"library": "jinit", "name": name, "shapes": shapes})
        warm = measure({"library": "both", "name": name, "shapes": shapes, "repeats": repeats})
        jax_result["warm"], jinit_result["warm"] = warm["jax"], warm["jinit"]
        for shape, ours, theirs in zip(shapes, jinit_result["digests"], jax_result["digests"], strict=True):
            assert ours == theirs, f"{name}{shape}: jinit's result differs from jax.nn.initializers's"
        if args.per_shape:
            print(f"\n{name}: shape, first call ms (JAX, jinit), warm µs (JAX, jinit)")
            for i, shape in enumerate(shapes):
                first = f"{jax_result['first'][i] * 1e3:9.1f} {jinit_result['first'][i] * 1e3:9.1f}"
                warm = f"{jax_result['warm'][i] * 1e6:11.0f} {jinit_result['warm'][i] * 1e6:11.0f}"
                print(f"  {shape!s:20} {first}   {warm}")
        rows.append(summarize(name, jax_result, jinit_result))
        device = jinit_result["device"]

    print_table(rows, repeats, device)
    missed = [row["name"] for row in rows if not row["met"]]
    print(
        f"Targets met: {'all' if not missed else 'not by ' + ', '.join(missed)}. Total time: "
        f"{time.perf_counter() - started:.0f} s."
    )
    if args.strict and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
