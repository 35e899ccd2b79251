"""Eager initialization as programs do it: jinit against `jax.nn.initializers`, side by side, in one run.

Every measurement runs in a fresh process (persistent compilation cache off) and counts all the work each
library does, from its first call to the process's exit: nothing is awaited, warmed up or settled beforehand.

- **Layer by layer.** Three initializers (`glorot_uniform`, `normal(0.02)`, `truncated_normal(0.02)`) on 30 new
  shapes ``(64 + 3i, 96 + 5i)``, as a model built layer by layer calls them: the first call of each (shape,
  initializer), then five more rounds over the same calls, starting right after the first ones. Each figure is
  the mean time of a call in that round. Targets: first calls <= 0.25x JAX, every warm round <= 1.0x JAX.
- **Flax NNX.** A GPT-2-small-sized model (embeddings, 12 blocks of layer norms and `nnx.Linear` layers, 124 M
  parameters) built eagerly with `normal(0.02)`/`zeros` kernels and biases of either library, twice in one
  process; each build is timed until its last parameter is ready. Targets: first build <= 0.6x JAX, second
  <= 1.0x.
- **Exit.** A script that calls 100 new shapes twice, then exits: the time from its last call's return to the
  end of the process. Target: <= 0.5 s.

The libraries alternate (JAX, jinit, JAX, jinit, ...) for `--runs` runs and each figure is the median over the
runs, so the load of a shared machine weighs on both alike. The whole-model path (`init_tree`) has its own
script, `benchmarks/init_tree.py`.

Run it from the repository root (about 3 minutes on a slow 2-core CPU):

    .venv/bin/python benchmarks/eager.py
    .venv/bin/python benchmarks/eager.py --runs 5
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = [(64 + 3 * i, 96 + 5 * i) for i in range(30)]
ROUNDS = 5
LIBRARIES = ("jax", "jinit")


def _module(library):
    import jax

    if library == "jinit":
        import jinit

        return jinit
    return jax.nn.initializers


def layers(library):
    """First calls, then ROUNDS warm rounds, on SHAPES with three initializers; mean seconds per call."""
    import jax

    m = _module(library)
    inits = [m.glorot_uniform(), m.normal(0.02), m.truncated_normal(0.02)]
    key = jax.random.key(0)
    jax.numpy.zeros(()).block_until_ready()  # the backend's start-up is neither library's

    def round_():
        start = time.perf_counter()
        for shape in SHAPES:
            for init in inits:
                init(key, shape).block_until_ready()
        return (time.perf_counter() - start) / (len(SHAPES) * len(inits))

    return {"first": round_(), "rounds": [round_() for _ in range(ROUNDS)]}


def nnx_gpt2(library):
    """Builds a GPT-2-small-sized Flax NNX model twice; seconds per build, until every parameter is ready."""
    import jax
    from flax import nnx

    m = _module(library)
    width, vocab, context, blocks = 768, 50257, 1024, 12
    kernel, bias = m.normal(0.02), m.zeros

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.ln_1 = nnx.LayerNorm(width, rngs=rngs)
            self.attn = nnx.Linear(width, 3 * width, kernel_init=kernel, bias_init=bias, rngs=rngs)
            self.proj = nnx.Linear(width, width, kernel_init=kernel, bias_init=bias, rngs=rngs)
            self.ln_2 = nnx.LayerNorm(width, rngs=rngs)
            self.fc = nnx.Linear(width, 4 * width, kernel_init=kernel, bias_init=bias, rngs=rngs)
            self.out = nnx.Linear(4 * width, width, kernel_init=kernel, bias_init=bias, rngs=rngs)

    class GPT2(nnx.Module):
        def __init__(self, rngs):
            self.wte = nnx.Embed(vocab, width, embedding_init=kernel, rngs=rngs)
            self.wpe = nnx.Embed(context, width, embedding_init=kernel, rngs=rngs)
            self.blocks = nnx.List([Block(rngs) for _ in range(blocks)])
            self.ln_f = nnx.LayerNorm(width, rngs=rngs)

    jax.numpy.zeros(()).block_until_ready()
    builds = []
    for seed in range(2):
        start = time.perf_counter()
        model = GPT2(nnx.Rngs(seed))
        jax.block_until_ready(nnx.state(model))
        builds.append(time.perf_counter() - start)
        count = sum(x.size for x in jax.tree.leaves(nnx.state(model)))
        del model
    return {"first": builds[0], "second": builds[1], "parameters": count}


EXIT_SCRIPT = """
import sys, time
import jax
if sys.argv[1] == "jinit":
    import jinit as m
else:
    m = jax.nn.initializers
init = m.glorot_uniform()
key = jax.random.key(0)
for _ in range(2):
    for i in range(100):
        init(key, (32 + i, 48 + 2 * i)).block_until_ready()
print(time.time(), flush=True)
"""


def exit_time(library):
    """Seconds from the script's last call to the end of its process."""
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, library], capture_output=True, text=True, env=_env())
    end = time.time()
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return {"exit": end - float(proc.stdout.strip().splitlines()[-1])}


WORKERS = {"layers": layers, "nnx": nnx_gpt2, "exit": exit_time}


def _env():
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


def run(worker, library):
    if worker == "exit":  # its own subprocess already
        return exit_time(library)
    command = [sys.executable, __file__, "--worker", worker, library]
    proc = subprocess.run(command, capture_output=True, text=True, env=_env())
    if proc.returncode:
        raise SystemExit(f"{worker} {library} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per library (default: 3)")
    parser.add_argument("--skip-nnx", action="store_true", help="leave out the Flax NNX model (needs flax)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker, library = args.worker
        print(json.dumps(WORKERS[worker](library)))
        return
    import importlib.util

    import jax

    if not args.skip_nnx and importlib.util.find_spec("flax") is None:
        print("flax is not installed (pip install 'jinit[flax]'): the NNX model is left out", file=sys.stderr)
        args.skip_nnx = True
    workers = ["layers", "exit"] + ([] if args.skip_nnx else ["nnx"])
    results = {(w, lib): [] for w in workers for lib in LIBRARIES}
    started = time.perf_counter()
    for i in range(args.runs):
        for w in workers:
            for lib in LIBRARIES:
                print(f"run {i + 1}/{args.runs}: {w} {lib}", file=sys.stderr, flush=True)
                results[w, lib].append(run(w, lib))

    def median(w, lib, field, index=None):
        values = [r[field] if index is None else r[field][index] for r in results[w, lib]]
        return statistics.median(values)

    rows = []
    jx, ji = median("layers", "jax", "first"), median("layers", "jinit", "first")
    rows.append(("first call, 30 new shapes x 3 (ms/call)", jx * 1e3, ji * 1e3, ji / jx, 0.25))
    for r in range(ROUNDS):
        jx, ji = median("layers", "jax", "rounds", r), median("layers", "jinit", "rounds", r)
        rows.append((f"warm round {r + 1} (ms/call)", jx * 1e3, ji * 1e3, ji / jx, 1.0))
    if "nnx" in workers:
        for build, target in (("first", 0.6), ("second", 1.0)):
            jx, ji = median("nnx", "jax", build), median("nnx", "jinit", build)
            rows.append((f"NNX GPT-2 small, {build} build (s)", jx, ji, ji / jx, target))
    jx, ji = median("exit", "jax", "exit"), median("exit", "jinit", "exit")
    rows.append(("exit after 100 shapes x 2 (s)", jx, ji, None, 0.5))

    print(f"\nCPU: {_cpu()} ({os.cpu_count()} cores); jax {jax.__version__}; median of {args.runs} alternating runs\n")
    print(f"{'measure':44} {'JAX':>9} {'jinit':>9} {'ratio':>7} {'target':>8}")
    missed = []
    for name, a, b, ratio, target in rows:
        if ratio is None:  # an absolute target, on jinit's figure
            met = b <= target
            print(f"{name:44} {a:9.3f} {b:9.3f} {'':>7} {'<= ' + str(target) + ' s':>8}  {'met' if met else 'MISSED'}")
        else:
            met = ratio <= target
            print(f"{name:44} {a:9.3f} {b:9.3f} {ratio:7.2f} {'<= ' + str(target):>8}  {'met' if met else 'MISSED'}")
        if not met:
            missed.append(name)
    print(
        f"\nTargets met: {'all' if not missed else 'not ' + '; '.join(missed)}. "
        f"Total time: {time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
