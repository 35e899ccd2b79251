"""A framework's own model initialized by its own compiled init and by jinit's integration, side by side.

Each scenario is a model written once, with jinit's initializers throughout (but one), about 300 M float32
parameters:

- ``gpt2-linen``, ``gpt2-nnx``, ``gpt2-haiku``: a GPT-2-medium-shaped model (24 unrolled blocks, width 1024,
  vocabulary 50257, context 1024: 355 M), weights normal(0.02), the projections into the residual stream
  normal(0.02 / sqrt(2 * blocks)), biases zeros, layer norms ones and zeros; ``gpt2-rbg`` and ``gpt2-unsafe_rbg``
  are the linen one with ``jax_default_prng_impl`` set so; ``gpt2-linen-own`` the linen one as its user wrote
  it before jinit, with JAX's ``normal`` and Flax's ``zeros_init`` and ``ones_init``, whose normals jinit draws
  with the eager values (checked bitwise against the eager ``module.init``: XLA folds a normal's two constant
  factors into one under ``jit``, which moves some values by an ulp); ``gpt2-haiku-own`` the Haiku one with
  Haiku's default initializers (truncated normals, zeros, ones), checked against the eager ``f.init``;
- ``vit-scan``: a ViT-L/16-shaped encoder as big_vision writes it with its scan option (patch embedding,
  learned position embedding, 24 blocks of width 1024 and MLP 4096 under ``nn.remat`` inside ``nn.scan``, the
  final norm and a zero-initialized 1000-class head: 304 M), image 224x224; ``vit-scan-96``: the same with 96
  blocks of width 512 and MLP 2048 (303 M);
- ``vit-nnx-vmap``: the same 24 blocks as an NNX stack made with ``nnx.vmap`` and ``nnx.split_rngs``, as Flax's
  "scan over layers" guide writes it; ``vit-nnx-vmap-own`` the same with Flax's default initializers (its
  kernels ``lecun_normal``: JAX's truncated normal of the vmap's keys), checked against the eager constructor;
- ``haiku-stack``: 24 transformer blocks of width 1024 stacked by ``hk.layer_stack``.

Methods: ``jit`` is the framework's own compiled initialization (``jax.jit(module.init)``, ``nnx.jit`` of the
constructor, ``jax.jit(f.init)``), ``eager`` the NNX constructor or the linen ``module.init`` called eagerly,
``jinit`` the integration's reusable object (``jinit.flax.initializer``, ``jinit.flax.builder``,
``jinit.haiku.initializer``). Each runs in a fresh process (persistent compilation cache off) that reports its
compile time (the sum of JAX's trace, lowering and backend-compile durations, from `jax.monitoring`), its first
call's total time to the last parameter, a second call's (another key: the warm case of ensembles and seed
sweeps), the median of the third to sixth calls' (``later``: each call's parameters dropped before the next, as a
seed sweep does), and the peak RSS growth over the process's RSS just before the first call (``VmHWM`` less
``VmRSS``), over the parameters' bytes. Every jinit result is checked bitwise against the framework's own, on a
small configuration of the same code, in the parent.
With ``--repeat N``, each method runs in N fresh processes, the methods in turn, and each figure is the median of
its N (a single second call of about a second moves by 10% on a shared machine).

Targets (issue 20), jinit against the framework's own in the same run: scanned and stacked models' totals
<= 0.5x (and the scanned ViT's compile <= 0.5x); GPT-2 under rbg and unsafe_rbg <= 0.5x; the unscanned NNX build
<= 1.0x its eager construction; every second call <= 1.0x; every peak RSS growth <= 1.15x the parameters (the
only target the issue sets for the ``-own`` scenarios, models left as their users wrote them). The
later calls have no target: they show where glibc's allocator starts to reuse the memory that the previous call's
parameters held, which it does for buffers of at most 32 MB (each leaf of a jitted init of an unrolled model) and
never for larger ones (jinit's, which are one buffer per distribution, and every stacked parameter).

Run it from the repository root (about 4 minutes on a slow 2-core CPU, 6 GB of memory); ``--only`` picks
scenarios:

    .venv/bin/python benchmarks/frameworks.py
    .venv/bin/python benchmarks/frameworks.py --only vit-scan vit-scan-96
    .venv/bin/python benchmarks/frameworks.py --scaling     # compile time at 6, 24 and 96 scanned blocks
    .venv/bin/python benchmarks/frameworks.py --repeat 3    # medians of three processes per method (12 minutes)
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

VOCAB, CONTEXT = 50257, 1024


def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(f"{field}:"))


# ------------------------------------------------------------------------------------------------- GPT-2


def gpt2_linen(blocks=24, width=1024, vocab=VOCAB, own=False):
    """With ``own``, Flax's own initializers (JAX's `normal`, Flax's `zeros_init` and `ones_init`): a model as
    its user wrote it before jinit, which jinit computes as Flax does."""
    import flax.linen as nn
    import jax.numpy as jnp

    import jinit

    lib = nn.initializers if own else jinit
    ones, zeros = (nn.initializers.ones_init(), nn.initializers.zeros_init()) if own else (jinit.ones, jinit.zeros)
    std, residual = lib.normal(0.02), lib.normal(0.02 / math.sqrt(2 * blocks))

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm(scale_init=ones, bias_init=zeros)(x)
            q, k, v = jnp.split(nn.Dense(3 * width, kernel_init=std, bias_init=zeros)(h), 3, axis=-1)
            a = nn.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(width)) @ v
            x = x + nn.Dense(width, kernel_init=residual, bias_init=zeros)(a)
            h = nn.LayerNorm(scale_init=ones, bias_init=zeros)(x)
            h = nn.gelu(nn.Dense(4 * width, kernel_init=std, bias_init=zeros)(h))
            return x + nn.Dense(width, kernel_init=residual, bias_init=zeros)(h)

    class GPT(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(vocab, width, embedding_init=std)(tokens)
            x = x + nn.Embed(CONTEXT, width, embedding_init=lib.normal(0.01))(jnp.arange(tokens.shape[-1]))
            for _ in range(blocks):
                x = Block()(x)
            return nn.LayerNorm(scale_init=ones, bias_init=zeros)(x)

    return GPT(), (jnp.zeros((1, 8), jnp.int32),)


def gpt2_nnx(blocks=24, width=1024, vocab=VOCAB):
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

    return lambda key: GPT(nnx.Rngs(key))


def gpt2_haiku(blocks=24, width=1024, vocab=VOCAB, own=False):
    """With ``own``, Haiku's default initializers throughout (``None``: its truncated normals, zeros and ones)."""
    import haiku as hk
    import jax
    import jax.numpy as jnp

    import jinit
    from jinit.haiku import to_haiku

    std, residual = to_haiku(jinit.normal(0.02)), to_haiku(jinit.normal(0.02 / math.sqrt(2 * blocks)))
    zeros, ones = to_haiku(jinit.zeros), to_haiku(jinit.ones)
    position = to_haiku(jinit.normal(0.01))
    if own:
        std = residual = zeros = ones = position = None

    def norm(x):
        return hk.LayerNorm(-1, True, True, scale_init=ones, offset_init=zeros)(x)

    def forward(tokens):
        x = hk.Embed(vocab, width, w_init=std)(tokens)
        x = x + hk.Embed(CONTEXT, width, w_init=position)(jnp.arange(tokens.shape[-1]))
        for _ in range(blocks):
            h = norm(x)
            q, k, v = jnp.split(hk.Linear(3 * width, w_init=std, b_init=zeros)(h), 3, axis=-1)
            a = jax.nn.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(width)) @ v
            x = x + hk.Linear(width, w_init=residual, b_init=zeros)(a)
            h = jax.nn.gelu(hk.Linear(4 * width, w_init=std, b_init=zeros)(norm(x)))
            x = x + hk.Linear(width, w_init=residual, b_init=zeros)(h)
        return norm(x)

    return hk.transform(forward), (jnp.zeros((1, 8), jnp.int32),)


# --------------------------------------------------------------------------------------------------- ViT


def vit_linen(depth=24, width=1024, mlp=4096, heads=16, image=224):
    """big_vision's ViT with ``scan=True``, written for this benchmark with jinit's initializers."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    import jinit

    xavier, tiny = jinit.xavier_uniform(), jinit.normal(1e-6)

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, deterministic):
            y = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
            y = nn.MultiHeadDotProductAttention(
                num_heads=heads, kernel_init=xavier, bias_init=jinit.zeros, deterministic=deterministic
            )(y, y)
            x = x + y
            y = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
            y = nn.gelu(nn.Dense(mlp, kernel_init=xavier, bias_init=tiny)(y))
            return x + nn.Dense(width, kernel_init=xavier, bias_init=tiny)(y), None

    class ViT(nn.Module):
        @nn.compact
        def __call__(self, images):
            x = nn.Conv(width, (16, 16), strides=(16, 16), padding="VALID", kernel_init=jinit.lecun_normal(),
                        bias_init=jinit.zeros, name="embedding")(images)  # fmt: skip
            n, h, w, c = x.shape
            x = x.reshape(n, h * w, c)
            x = x + self.param("pos_embedding", jinit.normal(1 / math.sqrt(width)), (1, h * w, c))
            block = nn.remat(
                Block, prevent_cse=False, static_argnums=(2,), policy=jax.checkpoint_policies.nothing_saveable
            )
            x, _ = nn.scan(
                block, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=nn.broadcast, length=depth
            )(name="encoderblock")(x, True)
            x = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros, name="encoder_norm")(x)
            return nn.Dense(1000, kernel_init=jinit.zeros, bias_init=jinit.zeros, name="head")(jnp.mean(x, axis=1))

    return ViT(), (jnp.zeros((1, image, image, 3)),)


def vit_nnx(depth=24, width=1024, mlp=4096, heads=16, own=False):
    """The ViT blocks as an NNX stack: ``nnx.vmap`` of the block's constructor over split keys; with ``own``,
    Flax's default initializers throughout."""
    from flax import nnx

    import jinit

    xavier, tiny = jinit.xavier_uniform(), jinit.normal(1e-6)
    norm = {} if own else {"scale_init": jinit.ones, "bias_init": jinit.zeros}
    attention = {} if own else {"kernel_init": xavier, "bias_init": jinit.zeros}
    dense = {} if own else {"kernel_init": xavier, "bias_init": tiny}

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.norm_1 = nnx.LayerNorm(width, **norm, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(heads, width, **attention, decode=False, rngs=rngs)
            self.norm_2 = nnx.LayerNorm(width, **norm, rngs=rngs)
            self.mlp_1 = nnx.Linear(width, mlp, **dense, rngs=rngs)
            self.mlp_2 = nnx.Linear(mlp, width, **dense, rngs=rngs)

    class Encoder(nnx.Module):
        def __init__(self, rngs):
            @nnx.split_rngs(splits=depth)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def blocks(rngs):
                return Block(rngs)

            self.blocks = blocks(rngs)
            self.norm = nnx.LayerNorm(width, **norm, rngs=rngs)

    return lambda key: Encoder(nnx.Rngs(key))


def haiku_stack(depth=24, width=1024, heads=16):
    import haiku as hk
    import jax
    import jax.numpy as jnp

    import jinit
    from jinit.haiku import to_haiku

    std, zeros, ones = to_haiku(jinit.normal(0.02)), to_haiku(jinit.zeros), to_haiku(jinit.ones)
    residual = to_haiku(jinit.normal(0.02 / math.sqrt(2 * depth)))

    def forward(tokens):
        x = hk.Embed(VOCAB, width, w_init=std)(tokens)

        @hk.layer_stack(depth)
        def block(x):
            h = hk.LayerNorm(-1, True, True, scale_init=ones, offset_init=zeros)(x)
            h = hk.MultiHeadAttention(heads, width // heads, w_init=to_haiku(jinit.glorot_uniform()), b_init=zeros)(
                h, h, h
            )
            x = x + h
            h = hk.LayerNorm(-1, True, True, scale_init=ones, offset_init=zeros)(x)
            h = jax.nn.gelu(hk.Linear(4 * width, w_init=std, b_init=zeros)(h))
            return x + hk.Linear(width, w_init=residual, b_init=zeros)(h)

        return block(x)

    return hk.transform(forward), (jnp.zeros((1, 8), jnp.int32),)


# ------------------------------------------------------------------------------------------ the scenarios

SCENARIOS = {
    "gpt2-linen": ("linen", lambda small: gpt2_linen(*((2, 64, 1000) if small else ())), ("jit", "jinit")),
    "gpt2-nnx": ("nnx", lambda small: gpt2_nnx(*((2, 64, 1000) if small else ())), ("jit", "eager", "jinit")),
    "gpt2-haiku": ("haiku", lambda small: gpt2_haiku(*((2, 64, 1000) if small else ())), ("jit", "jinit")),
    "gpt2-haiku-own": ("haiku", lambda small: gpt2_haiku(*((2, 64, 1000) if small else ()), own=True),
                       ("jit", "eager", "jinit")),
    "gpt2-linen-own": ("linen", lambda small: gpt2_linen(*((2, 64, 1000) if small else ()), own=True),
                       ("jit", "eager", "jinit")),
    "gpt2-rbg": ("linen", lambda small: gpt2_linen(*((2, 64, 1000) if small else ())), ("jit", "jinit")),
    "gpt2-unsafe_rbg": ("linen", lambda small: gpt2_linen(*((2, 64, 1000) if small else ())), ("jit", "jinit")),
    "vit-scan": ("linen", lambda small: vit_linen(*((3, 64, 128, 4, 32) if small else ())), ("jit", "jinit")),
    "vit-scan-96": ("linen", lambda small: vit_linen(*((3, 64, 128, 4, 32) if small else (96, 512, 2048, 8))),
                    ("jit", "jinit")),
    "vit-nnx-vmap": ("nnx", lambda small: vit_nnx(*((3, 64, 128, 4) if small else ())), ("jit", "jinit")),
    "vit-nnx-vmap-own": ("nnx", lambda small: vit_nnx(*((3, 64, 128, 4) if small else ()), own=True),
                         ("jit", "eager", "jinit")),
    "haiku-stack": ("haiku", lambda small: haiku_stack(*((3, 64, 4) if small else ())), ("jit", "jinit")),
}  # fmt: skip
SCALING = (6, 24, 96)
"""The depths of ``--scaling`` (its ``vit-depth-*`` scenarios, small models, not in the default run)."""
for _depth in SCALING:
    SCENARIOS[f"vit-depth-{_depth}"] = ("linen", lambda small, d=_depth: vit_linen(d, 256, 1024, 4), ("jit", "jinit"))


def method(scenario, way, small=False):
    """The method's reusable initialization: a function of a key, and what to call first (the model's build)."""
    import jax

    framework, make, _ = SCENARIOS[scenario]
    if "rbg" in scenario:
        jax.config.update("jax_default_prng_impl", scenario.split("-", 1)[1])
    if framework == "linen":
        import jinit.flax

        model, args = make(small)
        init = {"jit": jax.jit(model.init), "eager": model.init}.get(way) or jinit.flax.initializer(model)
        return lambda key: init(key, *args)
    if framework == "nnx":
        from flax import nnx

        import jinit.flax

        constructor = make(small)
        if way == "jit":
            built = nnx.jit(constructor)
        elif way == "eager":
            built = constructor
        else:
            built = jinit.flax.builder(constructor)
        return lambda key: nnx.state(built(key))
    import jinit.haiku

    f, args = make(small)
    init = {"jit": jax.jit(f.init), "eager": f.init}.get(way) or jinit.haiku.initializer(f)
    return lambda key: init(key, *args)


def child(scenario, way):
    import jax
    import jax.numpy as jnp

    compile_s = [0.0]
    events = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")

    def listen(event, duration, **_):
        if event.startswith("/jax/core/compile/") and event.endswith(events):
            compile_s[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    init = method(scenario, way)
    jnp.zeros(()).block_until_ready()  # the backend's start-up is not the method's
    compile_s[0] = 0.0
    before = rss("VmRSS")
    start = time.perf_counter()
    out = jax.block_until_ready(init(jax.random.key(0)))
    first = time.perf_counter() - start
    compiled, peak = compile_s[0], rss("VmHWM")
    nbytes = sum(x.nbytes for x in jax.tree.leaves(out))
    del out
    start = time.perf_counter()
    out = jax.block_until_ready(init(jax.random.key(1)))
    second = time.perf_counter() - start
    later = []
    for seed in range(2, 6):
        del out
        start = time.perf_counter()
        out = jax.block_until_ready(init(jax.random.key(seed)))
        later.append(time.perf_counter() - start)
    del out
    print(json.dumps({"compile_s": compiled, "first_s": first, "second_s": second, "later_s": statistics.median(later),
                      "growth": (peak - before) / nbytes, "bytes": nbytes}))  # fmt: skip


def measure(scenario, way):
    env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE="false")
    argv = [sys.executable, __file__, "--child", scenario, way]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.exit(f"{scenario} {way} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_bitwise(scenarios):
    """Each scenario's jinit result is bitwise the framework's own, on a small configuration of the same code."""
    import jax
    import numpy as np

    for scenario in scenarios:
        # a model of JAX's own initializers is computed as they compute eagerly (under `jit`, XLA folds a normal's
        # two constant factors into one, which moves some values by an ulp)
        reference = "eager" if scenario.endswith("-own") else "jit"
        code = f"""
import jax, numpy as np, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import frameworks
ours = frameworks.method({scenario!r}, "jinit", small=True)(jax.random.key(3))
theirs = frameworks.method({scenario!r}, {reference!r}, small=True)(jax.random.key(3))
same = jax.tree.map(lambda a, b: np.asarray(a).tobytes() == np.asarray(b).tobytes(), ours, theirs)
sys.exit(0 if jax.tree.structure(ours) == jax.tree.structure(theirs) and all(jax.tree.leaves(same)) else 1)
"""
        if subprocess.run([sys.executable, "-c", code], check=False).returncode:
            sys.exit(f"{scenario}: jinit's parameters differ from the framework's own")
    del jax, np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="the scenarios to run (all by default)")
    parser.add_argument("--scaling", action="store_true", help="compile time of vit-scan at 6, 24 and 96 blocks")
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per method; medians are reported")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    import jax

    if args.scaling:
        print(f"jax {jax.__version__}; vit-scan at width 256, compile s of the first call\n")
        print(f"{'blocks':>6s} {'jit':>7s} {'jinit':>7s}")
        for depth in SCALING:
            row = [measure(f"vit-depth-{depth}", way)["compile_s"] for way in ("jit", "jinit")]
            print(f"{depth:6d} {row[0]:7.2f} {row[1]:7.2f}", flush=True)
        return None

    scenarios = args.only or [s for s in SCENARIOS if not s.startswith("vit-depth-")]
    check_bitwise(scenarios)
    print(f"jax {jax.__version__}; every jinit result checked bitwise against the framework's own\n")
    header = (
        f"{'scenario':16s} {'method':6s} {'params M':>8s} {'compile s':>9s} {'first s':>8s} {'second s':>8s} "
        f"{'later s':>7s} {'RSS growth':>10s}"
    )
    print(header + "\n" + "-" * len(header))
    rows = {}
    for scenario in scenarios:
        ways = SCENARIOS[scenario][2]
        runs = {way: [] for way in ways}
        for _ in range(args.repeat):  # the methods in turn, so that the machine's slow spells fall on each
            for way in ways:
                runs[way].append(measure(scenario, way))
        for way in ways:
            r = rows[scenario, way] = {k: statistics.median(run[k] for run in runs[way]) for k in runs[way][0]}
            print(f"{scenario:16s} {way:6s} {r['bytes'] / 4e6:8.0f} {r['compile_s']:9.2f} {r['first_s']:8.2f} "
                  f"{r['second_s']:8.2f} {r['later_s']:7.2f} {r['growth']:10.2f}", flush=True)  # fmt: skip
    print(f"\n{'jinit / own':16s} {'against':7s} {'compile':>8s} {'first':>7s} {'second':>7s} {'later':>6s} {'RSS':>6s}"
          "   targets")  # fmt: skip
    for scenario in scenarios:
        ours = rows[scenario, "jinit"]
        for way in [w for w in SCENARIOS[scenario][2] if w != "jinit"]:
            theirs = rows[scenario, way]
            ratios = [ours[k] / theirs[k] for k in ("compile_s", "first_s", "second_s", "later_s")]
            target = 1.0 if way == "eager" else 0.5
            met = ratios[1] <= target and ratios[2] <= 1.0 and ours["growth"] <= 1.15
            targets = f"first <= {target}, second <= 1.0, RSS <= 1.15"
            if scenario.startswith("vit-scan"):
                met = met and ratios[0] <= 0.5
            if scenario.endswith("-own"):  # a model as its user wrote it: the issue sets a target for memory only
                met, targets = ours["growth"] <= 1.15, "RSS <= 1.15"
            print(f"{scenario:16s} {way:7s} {ratios[0]:8.2f} {ratios[1]:7.2f} {ratios[2]:7.2f} {ratios[3]:6.2f} "
                  f"{ours['growth']:6.2f}   {targets}: {'met' if met else 'NOT met'}")  # fmt: skip
    return None


if __name__ == "__main__":
    main()
