"""A framework's own model initialized by its own compiled init and by jinit's integration, side by side.

The model is GPT-2-shaped (vocabulary 50257, context 1024; `--blocks` blocks of width `--width`, 24 and 1024 by
default: GPT-2 medium, 355 M float32 parameters), written once per framework with jinit's initializers
(weights normal(0.02), the projections into the residual stream normal(0.02 / sqrt(2 * blocks)), biases zeros,
layer norms ones and zeros) and a forward pass of embeddings, attention and MLP:

- Flax linen: ``jax.jit(model.init)(key, tokens)`` against ``jinit.flax.init(model, key, tokens)``;
- Flax NNX: ``nnx.jit`` of the constructor against ``jinit.flax.build(constructor)``;
- Haiku: ``jax.jit(f.init)(key, tokens)`` against ``jinit.haiku.init(f, key, tokens)``.

Each method runs in a fresh process (persistent compilation cache off) that reports its compile time (the sum
of JAX's trace, lowering and backend-compile durations, from `jax.monitoring`), its total time to the last
parameter, and its peak RSS (``VmHWM``) over the parameter bytes. Every jinit result is checked bitwise against
the framework's own (in the parent, on a small model of the same code). With `--scaling`, the compile time of
each method at 6, 24 and 48 blocks (width 256, to keep the runs short): how it grows with depth.

Targets (issue 13), for each framework: jinit's compile <= 0.1x the framework's, its total <= 0.5x, its peak
RSS <= 1.15x the parameter bytes.

Run it from the repository root (about 3 minutes on a slow 2-core CPU, 5 GB of memory):

    .venv/bin/python benchmarks/frameworks.py
    .venv/bin/python benchmarks/frameworks.py --scaling
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

VOCAB, CONTEXT = 50257, 1024
METHODS = ("linen jit", "linen jinit", "nnx jit", "nnx jinit", "haiku jit", "haiku jinit")


def rss(field="VmHWM"):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(f"{field}:"))


def linen_model(blocks, width, vocab):
    import flax.linen as nn
    import jax.numpy as jnp

    import jinit

    std, residual = jinit.normal(0.02), jinit.normal(0.02 / math.sqrt(2 * blocks))

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
            q, k, v = jnp.split(nn.Dense(3 * width, kernel_init=std, bias_init=jinit.zeros)(h), 3, axis=-1)
            a = nn.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(width)) @ v
            x = x + nn.Dense(width, kernel_init=residual, bias_init=jinit.zeros)(a)
            h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
            h = nn.gelu(nn.Dense(4 * width, kernel_init=std, bias_init=jinit.zeros)(h))
            return x + nn.Dense(width, kernel_init=residual, bias_init=jinit.zeros)(h)

    class GPT(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(vocab, width, embedding_init=std)(tokens)
            x = x + nn.Embed(CONTEXT, width, embedding_init=jinit.normal(0.01))(jnp.arange(tokens.shape[-1]))
            for _ in range(blocks):
                x = Block()(x)
            return nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)

    return GPT()


def nnx_constructor(blocks, width, vocab):
    from flax import nnx

    import jinit

    std, residual = jinit.normal(0.02), jinit.normal(0.02 / math.sqrt(2 * blocks))

    def linear(n_in, n_out, init, rngs):
        return nnx.Linear(n_in, n_out, kernel_init=init, bias_init=jinit.zeros, rngs=rngs)

    def norm(rngs):
        return nnx.LayerNorm(width, scale_init=jinit.ones, bias_init=jinit.zeros, rngs=rngs)

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.ln_1, self.ln_2 = norm(rngs), norm(rngs)
            self.c_attn = linear(width, 3 * width, std, rngs)
            self.attn_proj = linear(width, width, residual, rngs)
            self.c_fc = linear(width, 4 * width, std, rngs)
            self.mlp_proj = linear(4 * width, width, residual, rngs)

    class GPT(nnx.Module):
        def __init__(self, rngs):
            self.wte = nnx.Embed(vocab, width, embedding_init=std, rngs=rngs)
            self.wpe = nnx.Embed(CONTEXT, width, embedding_init=jinit.normal(0.01), rngs=rngs)
            self.blocks = nnx.List([Block(rngs) for _ in range(blocks)])
            self.ln_f = norm(rngs)

    return lambda: GPT(nnx.Rngs(0))


def haiku_transformed(blocks, width, vocab):
    import haiku as hk
    import jax
    import jax.numpy as jnp

    import jinit
    from jinit.haiku import to_haiku

    std, residual = to_haiku(jinit.normal(0.02)), to_haiku(jinit.normal(0.02 / math.sqrt(2 * blocks)))
    zeros, ones = to_haiku(jinit.zeros), to_haiku(jinit.ones)

    def norm(x):
        return hk.LayerNorm(-1, True, True, scale_init=ones, offset_init=zeros)(x)

    def forward(tokens):
        x = hk.Embed(vocab, width, w_init=std)(tokens)
        x = x + hk.Embed(CONTEXT, width, w_init=to_haiku(jinit.normal(0.01)))(jnp.arange(tokens.shape[-1]))
        for _ in range(blocks):
            h = norm(x)
            q, k, v = jnp.split(hk.Linear(3 * width, w_init=std, b_init=zeros)(h), 3, axis=-1)
            a = jax.nn.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(width)) @ v
            x = x + hk.Linear(width, w_init=residual, b_init=zeros)(a)
            h = jax.nn.gelu(hk.Linear(4 * width, w_init=std, b_init=zeros)(norm(x)))
            x = x + hk.Linear(width, w_init=residual, b_init=zeros)(h)
        return norm(x)

    return hk.transform(forward)


def run(method, blocks, width, vocab):
    """The method's result (a pytree of arrays), from its first call."""
    import jax
    import jax.numpy as jnp

    import jinit.flax
    import jinit.haiku

    key, tokens = jax.random.key(0), jnp.zeros((1, 8), jnp.int32)
    framework, way = method.split()
    if framework == "linen":
        model = linen_model(blocks, width, vocab)
        return jax.jit(model.init)(key, tokens) if way == "jit" else jinit.flax.init(model, key, tokens)
    if framework == "nnx":
        from flax import nnx

        constructor = nnx_constructor(blocks, width, vocab)
        if way == "jit":
            return nnx.state(nnx.jit(constructor)())
        return nnx.state(jinit.flax.build(constructor))
    f = haiku_transformed(blocks, width, vocab)
    return jax.jit(f.init)(key, tokens) if way == "jit" else jinit.haiku.init(f, key, tokens)


def child(method, blocks, width):
    import jax
    import jax.numpy as jnp

    compile_s = [0.0]
    events = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")

    def listen(event, duration, **_):
        if event.startswith("/jax/core/compile/") and event.endswith(events):
            compile_s[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    jnp.zeros(()).block_until_ready()  # the backend's start-up is not the method's
    compile_s[0] = 0.0
    start = time.perf_counter()
    out = jax.block_until_ready(run(method, blocks, width, VOCAB))
    total = time.perf_counter() - start
    nbytes = sum(x.nbytes for x in jax.tree.leaves(out))
    print(json.dumps({"compile_s": compile_s[0], "total_s": total, "rss": rss(), "bytes": nbytes}))


def measure(method, blocks, width):
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
    argv = [sys.executable, __file__, "--child", method, "--blocks", str(blocks), "--width", str(width)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_bitwise():
    """Each framework's jinit result is bitwise its own, on a small model of the same code."""
    import jax
    import numpy as np

    for framework in ("linen", "nnx", "haiku"):
        ours, theirs = (run(f"{framework} {way}", 2, 64, 1000) for way in ("jinit", "jit"))
        same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), ours, theirs)
        if not all(jax.tree.leaves(same)):
            sys.exit(f"{framework}: jinit's parameters differ from the framework's own")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=24)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--scaling", action="store_true", help="compile time at 6, 24 and 48 blocks (width 256)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.blocks, args.width)
    import jax

    check_bitwise()
    print(f"jax {jax.__version__}; every jinit result checked bitwise against the framework's own\n")
    if args.scaling:
        print(f"{'compile s':12s}" + "".join(f"{m:>13s}" for m in METHODS))
        for blocks in (6, 24, 48):
            row = [measure(m, blocks, 256)["compile_s"] for m in METHODS]
            print(f"{blocks:3d} blocks   " + "".join(f"{s:13.2f}" for s in row))
        return None
    results = {m: measure(m, args.blocks, args.width) for m in METHODS}
    nbytes = results["linen jit"]["bytes"]
    print(f"GPT-2-shaped, {args.blocks} blocks, width {args.width}: {nbytes / 4e6:.0f} M float32 parameters")
    header = f"{'method':14s} {'compile s':>10s} {'total s':>9s} {'RSS/params':>11s}"
    print(header + "\n" + "-" * len(header))
    for m, r in results.items():
        print(f"{m:14s} {r['compile_s']:10.2f} {r['total_s']:9.2f} {r['rss'] / r['bytes']:11.2f}")
    print(f"\n{'jinit / framework':18s} {'compile':>8s} {'total':>8s} {'RSS/params':>11s}   targets <= 0.1, 0.5, 1.15")
    for framework in ("linen", "nnx", "haiku"):
        ours, theirs = results[f"{framework} jinit"], results[f"{framework} jit"]
        ratios = (ours["compile_s"] / theirs["compile_s"], ours["total_s"] / theirs["total_s"])
        ratio_rss = ours["rss"] / ours["bytes"]
        met = ratios[0] <= 0.1 and ratios[1] <= 0.5 and ratio_rss <= 1.15
        print(f"{framework:18s} {ratios[0]:8.2f} {ratios[1]:8.2f} {ratio_rss:11.2f}   {'met' if met else 'NOT met'}")
    return None


if __name__ == "__main__":
    main()
