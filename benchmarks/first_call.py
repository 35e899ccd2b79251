"""First-call and warm timings of jinit against `jax.nn.initializers`, side by side, on realistic shapes.

What it measures, for each initializer (glorot_uniform, normal, truncated_normal, he_normal, orthogonal) and
each library:

- first call: the time of ``init(key, shape).block_until_ready()`` the first time a process sees `shape`. For
  `jax.nn.initializers` this includes compiling the sampler for that shape; jinit assembles an eager sample
  from chunks of three fixed sizes (see `jinit._src.kernels`), so after its chunks are compiled a new shape
  compiles nothing. The chunks that the warm-up shape did not need are compiled during the first calls and
  are counted in them, which only the mean (not the median) shows.
- warm: the median of `--repeats` further calls on the same shape.

Each (library, initializer) pair runs in a fresh subprocess with the persistent compilation cache off, so no
compiled program leaks from one measurement to another. A process first warms its library up on one unrelated
shape (so imports and one-time costs are not counted), then measures each shape in turn. Every shape's result
is hashed, and jinit's must be bitwise equal to JAX's, or the script fails.

The first-call ratio is the ratio of the mean first-call times (the total time to initialize all the shapes);
the warm ratio is the geometric mean over shapes of jinit's warm median over JAX's. Targets: first-call ratio
<= 0.25 and warm ratio <= 1.0. `orthogonal` compiles a QR for each shape in both libraries, so its first-call
ratio is expected to be about 1 and has no target; it runs on the shapes of at most 1.2 M elements, whose QR
does not swamp the run time.

Run it from the repository root (about 3 minutes on a 2-core machine; `--quick` takes well under one):

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

# name: (positional arguments, kinds of shape it takes, largest size, whether the first-call target applies).
# orthogonal's QR takes most of the time on large shapes and tells nothing about jinit: they are left out.
INITIALIZERS = {
    "glorot_uniform": ((), {"kernel"}, math.inf, True),
    "normal": ((0.02,), {"kernel", "bias", "embedding"}, math.inf, True),
    "truncated_normal": ((0.02,), {"kernel", "bias"}, math.inf, True),
    "he_normal": ((), {"kernel"}, math.inf, True),
    "orthogonal": ((), {"kernel"}, 1.2e6, False),
}
FIRST_CALL_TARGET = 0.25
WARM_TARGET = 1.0


def shapes_for(name: str, count: int) -> list[tuple[int, ...]]:
    """The first `count` shapes of the pool that initializer `name` takes (each at most its largest size)."""
    _, kinds, largest, _ = INITIALIZERS[name]
    shapes = [shape for shape, kind in POOL if kind in kinds and math.prod(shape) <= largest][:count]
    assert len(set(shapes)) == len(shapes) and WARMUP_SHAPE not in shapes
    if len(shapes) < count:
        raise SystemExit(f"`--shapes` must be at most {len(shapes)} for {name}. Received: --shapes={count}")
    return shapes


def worker(library: str, name: str, shapes: list[tuple[int, ...]], repeats: int) -> dict:
    """Runs in a fresh process: times `library`'s initializer `name` on each shape; returns times and hashes."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_compilation_cache", False)
    if library == "jinit":
        import jinit as module
    else:
        module = jax.nn.initializers
    init = getattr(module, name)(*INITIALIZERS[name][0])
    key = jax.random.key(0)
    init(key, WARMUP_SHAPE).block_until_ready()

    first, warm, digests = [], [], []
    for shape in shapes:
        start = time.perf_counter()
        x = init(key, shape).block_until_ready()
        first.append(time.perf_counter() - start)
        times = []
        for _ in range(repeats):
            del x
            start = time.perf_counter()
            x = init(key, shape).block_until_ready()
            times.append(time.perf_counter() - start)
        warm.append(statistics.median(times))
        array = np.ascontiguousarray(np.asarray(x))
        digests.append(f"{array.dtype}{array.shape}:{hashlib.blake2b(array.data).hexdigest()}")
        del x, array
    return {"first": first, "warm": warm, "digests": digests, "device": str(jax.devices()[0])}


def measure(library: str, name: str, shapes: list[tuple[int, ...]], repeats: int) -> dict:
    """`worker` in a fresh Python process, with no persistent compilation cache."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    request = json.dumps({"library": library, "name": name, "shapes": shapes, "repeats": repeats})
    done = subprocess.run(
        [sys.executable, __file__, "--worker", request], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{library} {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=30, help="shapes per initializer (default: 30)")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per shape (default: 3)")
    parser.add_argument("--quick", action="store_true", help="8 shapes per initializer, 2 warm calls")
    parser.add_argument("--initializers", nargs="+", choices=list(INITIALIZERS), default=list(INITIALIZERS))
    parser.add_argument("--per-shape", action="store_true", help="also print every shape's timings")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        request = json.loads(args.worker)
        shapes = [tuple(shape) for shape in request["shapes"]]
        print(json.dumps(worker(request["library"], request["name"], shapes, request["repeats"])))
        return
    count, repeats = (8, 2) if args.quick else (args.shapes, args.repeats)

    rows, missed, started = [], [], time.perf_counter()
    for name in args.initializers:
        shapes = shapes_for(name, count)
        jax_result = measure("jax", name, shapes, repeats)
        jinit_result = measure("jinit", name, shapes, repeats)
        for shape, ours, theirs in zip(shapes, jinit_result["digests"], jax_result["digests"], strict=True):
            assert ours == theirs, f"{name}{shape}: jinit's result differs from jax.nn.initializers's"
        if args.per_shape:
            print(f"\n{name}: shape, first call ms (JAX, jinit), warm µs (JAX, jinit)")
            for i, shape in enumerate(shapes):
                first = f"{jax_result['first'][i] * 1e3:9.1f} {jinit_result['first'][i] * 1e3:9.1f}"
                warm = f"{jax_result['warm'][i] * 1e6:11.0f} {jinit_result['warm'][i] * 1e6:11.0f}"
                print(f"  {shape!s:20} {first}   {warm}")
        first_ratio = statistics.fmean(jinit_result["first"]) / statistics.fmean(jax_result["first"])
        warm_ratio = geometric_mean([a / b for a, b in zip(jinit_result["warm"], jax_result["warm"], strict=True)])
        has_target = INITIALIZERS[name][3]
        if (has_target and first_ratio > FIRST_CALL_TARGET) or warm_ratio > WARM_TARGET:
            missed.append(name)
        rows.append((name, len(shapes), jax_result, jinit_result, first_ratio, warm_ratio, has_target))

    print(f"\nDevice: {rows[0][2]['device']}; {repeats} warm calls per shape; all results bitwise equal to JAX's.")
    print("Times in ms (first call) and µs (warm median); ratio = jinit / JAX.")
    header = (
        f"{'initializer':17} {'n':>3}  {'mean JAX':>9} {'jinit':>7} {'median JAX':>10} {'jinit':>7}"
        f" {'ratio':>6} {'(target)':>9}   {'warm JAX':>9} {'jinit':>9} {'ratio':>6} {'(target)':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, n, theirs, ours, first_ratio, warm_ratio, has_target in rows:
        first = (
            f"{statistics.fmean(theirs['first']) * 1e3:9.1f} {statistics.fmean(ours['first']) * 1e3:7.1f}"
            f" {statistics.median(theirs['first']) * 1e3:10.1f} {statistics.median(ours['first']) * 1e3:7.1f}"
        )
        target = f"<= {FIRST_CALL_TARGET}" if has_target else "~1, n/a"
        warm = f"{statistics.median(theirs['warm']) * 1e6:9.0f} {statistics.median(ours['warm']) * 1e6:9.0f}"
        print(f"{name:17} {n:3}  {first} {first_ratio:6.2f} {target:>9}   {warm} {warm_ratio:6.2f} {'<= 1.0':>8}")
    print(f"\nTargets met: {'all' if not missed else 'not by ' + ', '.join(missed)}.")
    print("orthogonal compiles a QR per shape in both libraries: a first-call ratio of about 1 is expected.")
    print(f"Total time: {time.perf_counter() - started:.0f} s.")
    if args.strict and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
