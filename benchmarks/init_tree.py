"""Whole-model initialization: jinit's `init_tree` against `jax.nn.initializers`, side by side, in one run.

The model is GPT-2-shaped float32 parameters in a nested dict: XL (48 blocks, width 1600, 1.56 B parameters,
6.2 GB) by default, small (12 blocks, width 768, 124 M) with `--small`. Weights are normal(0.02), the two
projections into the residual stream normal(0.02 / sqrt(2 * blocks)), biases zeros, layer-norm scales ones.

Each method runs in a fresh process (persistent compilation cache off) that reports its compile time (the sum
of JAX's trace, lowering and backend-compile durations, from `jax.monitoring`), its total wall time, and its
peak RSS (``VmHWM``):

- `jax eager`: `jax.nn.initializers`, leaf by leaf, keys from `jax.random.split`;
- `jax one jit`: the same in one `jax.jit` over all leaves (what ``model.init`` under jit does);
- `jax grouped`: leaves grouped by (initializer, shape), each group one `jax.lax.map` over its keys, all in
  one jit (returned stacked, not split into leaves);
- `random bits`: `jax.random.bits` (uint32) of every leaf's shape, one jitted call per leaf, timed after every
  shape is compiled (the median of 3 runs): the cost of the random stream itself;
- `jinit`: ``jinit.init_tree(key, specs)`` in a fresh process (its first call, compile included), then again
  (warm: the run time, the median of 3 runs).

Targets (issue 12; issue 4 set 0.45x and 1.1x), on the XL tree: jinit's compile <= 2 s, its first call <= 0.2x
the one-jit total, its warm run <= 0.3x the random bits, its peak RSS <= 1.15x the parameter bytes. The peak RSS
includes the process's own footprint (Python, JAX and XLA, about 0.3 GB), which weighs 12x more against the small
model's 0.5 GB; "growth" is the peak less the RSS the process had just before the method started.

Run it from the repository root (about 4 minutes on a slow 2-core CPU and 15 GB of memory, which the one-jit
baseline needs; `--small` about 30 s):

    .venv/bin/python benchmarks/init_tree.py
    .venv/bin/python benchmarks/init_tree.py --small
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

SIZES = {"xl": (48, 1600), "small": (12, 768)}
VOCAB, CONTEXT = 50257, 1024
METHODS = ("jax eager", "jax one jit", "jax grouped", "random bits", "jinit")
REPEATS = 3  # warm runs of random bits and of jinit, of which the median is reported


def gpt2(blocks, width):
    """`{name: (shape, initializer name, stddev)}` nested as GPT-2's parameters are."""
    std, residual = 0.02, 0.02 / math.sqrt(2 * blocks)

    def dense(n_in, n_out, stddev):
        return {"kernel": ((n_in, n_out), "normal", stddev), "bias": ((n_out,), "zeros", None)}

    def norm():
        return {"scale": ((width,), "ones", None), "bias": ((width,), "zeros", None)}

    tree = {"wte": ((VOCAB, width), "normal", std), "wpe": ((CONTEXT, width), "normal", 0.01), "ln_f": norm()}
    for i in range(blocks):
        tree[f"h{i}"] = {
            "ln_1": norm(),
            "attn": {"c_attn": dense(width, 3 * width, std), "c_proj": dense(width, width, residual)},
            "ln_2": norm(),
            "mlp": {"c_fc": dense(width, 4 * width, std), "c_proj": dense(4 * width, width, residual)},
        }
    return tree


def is_entry(x):
    return isinstance(x, tuple) and len(x) == 3 and isinstance(x[0], tuple)


def rss(field="VmHWM"):
    """The process's peak (VmHWM) or current (VmRSS) resident memory, in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(f"{field}:"))


def warm_median(run):
    """The median time of `REPEATS` calls of `run`, each result dropped before the next call."""
    import jax

    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = run()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
        del out
    return statistics.median(times)


def child(method, size):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jinit

    compile_s = [0.0]
    events = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")

    def listen(event, duration, **_):
        if event.startswith("/jax/core/compile/") and event.endswith(events):
            compile_s[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    tree = gpt2(*SIZES[size])
    entries, treedef = jax.tree.flatten(tree, is_leaf=is_entry)
    key = jax.random.key(0)
    jnp.zeros(()).block_until_ready()  # the backend's start-up is not the method's
    compile_s[0] = 0.0
    result = {"start_rss": rss("VmRSS")}

    def jax_init(name, stddev):
        return {
            "normal": lambda: jax.nn.initializers.normal(stddev),
            "zeros": lambda: jax.nn.initializers.zeros,
            "ones": lambda: jax.nn.initializers.ones,
        }[name]()

    start = time.perf_counter()
    if method == "jax eager":
        keys = jax.random.split(key, len(entries))
        out = [jax_init(n, s)(k, shape) for k, (shape, n, s) in zip(keys, entries, strict=True)]
    elif method == "jax one jit":

        def all_leaves(key):
            keys = jax.random.split(key, len(entries))
            return [jax_init(n, s)(k, shape) for k, (shape, n, s) in zip(keys, entries, strict=True)]

        out = jax.jit(all_leaves)(key)
    elif method == "jax grouped":
        groups = {}
        for i, entry in enumerate(entries):
            groups.setdefault(entry, []).append(i)

        def grouped(key):
            keys = jax.random.split(key, len(entries))
            return [
                jax.lax.map(lambda k, e=e: jax_init(e[1], e[2])(k, e[0]), keys[np.array(ix)])
                for e, ix in groups.items()
            ]

        out = jax.jit(grouped)(key)
    elif method == "random bits":
        keys = list(jax.random.split(key, len(entries)))  # split before timing, as jinit derives its keys
        kernels = {shape: jax.jit(lambda k, s=shape: jax.random.bits(k, s, jnp.uint32)) for shape, _, _ in entries}
        for kernel in kernels.values():
            kernel(key).block_until_ready()
        compile_s[0] = 0.0

        def run():
            return [kernels[shape](k) for k, (shape, _, _) in zip(keys, entries, strict=True)]

        result["warm_s"] = warm_median(run)
        out = []
    else:
        jit_init = {"normal": jinit.normal, "zeros": lambda _: jinit.zeros, "ones": lambda _: jinit.ones}
        specs = jax.tree.unflatten(treedef, [jinit.ParamSpec(shape, jit_init[n](s)) for shape, n, s in entries])
        out = jinit.init_tree(key, specs)
        jax.block_until_ready(out)
        result["first_s"] = time.perf_counter() - start
        result["first_compile_s"] = compile_s[0]
        del out
        compile_s[0] = 0.0
        result["warm_s"] = warm_median(lambda: jinit.init_tree(key, specs))
        out = []
    jax.block_until_ready(out)
    result.update(total_s=time.perf_counter() - start, compile_s=compile_s[0], rss=rss())
    result["bytes"] = sum(math.prod(shape) * 4 for shape, _, _ in entries)
    result["leaves"] = len(entries)
    print(json.dumps(result))


def measure(method, size, script=__file__):
    """Runs `script` (this one, or another benchmark that shares its models) as a fresh child process for
    `method` at `size`; returns the JSON line it prints last."""
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
    proc = subprocess.run(
        [sys.executable, script, "--child", method, "--size", size],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode:
        sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    j, gb = r["jinit"], r["jinit"]["bytes"] / 1e9
    blocks, width = SIZES[size]
    print(
        f"GPT-2 {size.upper()}-shaped tree: {blocks} blocks, width {width}, {j['leaves']} leaves, "
        f"{gb:.2f} GB of float32 parameters\n"
    )
    print(
        f"{'method':22} {'compile s':>10} {'total s':>9} {'run s':>8} {'peak RSS GB':>12} {'RSS/params':>11} "
        f"{'growth/params':>14}"
    )

    def memory(m):
        return f"{m['rss'] / 1e9:12.2f} {m['rss'] / m['bytes']:11.2f} {(m['rss'] - m['start_rss']) / m['bytes']:14.2f}"

    for method in METHODS[:-2]:
        m = r[method]
        print(
            f"{method:22} {m['compile_s']:10.2f} {m['total_s']:9.2f} {m['total_s'] - m['compile_s']:8.2f} {memory(m)}"
        )
    bits = r["random bits"]
    print(f"{'random bits (warm)':22} {0:10.2f} {bits['warm_s']:9.2f} {bits['warm_s']:8.2f} {memory(bits)}")
    print(
        f"{'jinit (first call)':22} {j['first_compile_s']:10.2f} {j['first_s']:9.2f} "
        f"{j['first_s'] - j['first_compile_s']:8.2f} {memory(j)}"
    )
    print(f"{'jinit (warm)':22} {j['compile_s']:10.2f} {j['warm_s']:9.2f} {j['warm_s']:8.2f}")
    one_jit, bits = r["jax one jit"]["total_s"], bits["warm_s"]
    rows = [
        ("compile (s)", j["first_compile_s"], "<= 2 s", j["first_compile_s"] <= 2),
        ("first call / jax one jit", j["first_s"] / one_jit, "<= 0.2", j["first_s"] / one_jit <= 0.2),
        ("warm run / random bits", j["warm_s"] / bits, "<= 0.3", j["warm_s"] / bits <= 0.3),
        ("peak RSS / parameters", j["rss"] / j["bytes"], "<= 1.15", j["rss"] / j["bytes"] <= 1.15),
    ]
    print(f"\n{'jinit':26} {'figure':>8} {'target':>9}")
    for name, value, target, met in rows:
        print(f"{name:26} {value:8.2f} {target:>9} {'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
