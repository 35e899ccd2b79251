"""A GPT-style Flax model, unchanged, initialized by jinit's engine: linen with `jinit.flax.init`, NNX with
`jinit.flax.build`.

The linen model is written as any Flax user writes it (embeddings, blocks of layer norms and dense layers with
jinit initializers, GPT-2's `1/sqrt(2 * layers)` residual scaling as `jinit.scaled`, Flax's default initializer
on the head). `jinit.flax.init(model, key, tokens)` returns bitwise the variables of `model.init(key, tokens)`:
every jinit parameter is drawn by the engine, once per distinct (initializer, shape, dtype) group, and the forward
pass's arithmetic never runs. The NNX version is built twice, eagerly and by `jinit.flax.build` (trace with
`nnx.eval_shape`, then draw), with bitwise the same parameters. The script exits with an error unless the values
agree. (benchmarks/frameworks.py measures the speed, each method in a fresh process.)

Run: ``.venv/bin/python examples/flax_model_init.py`` (a few seconds; needs ``pip install -e '.[flax]'``).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

import jinit
import jinit.flax

VOCAB, WIDTH, LAYERS = 2048, 128, 6
NORMAL = jinit.normal(0.02)
RESIDUAL = jinit.scaled(NORMAL, 1 / math.sqrt(2 * LAYERS))  # GPT-2's residual output projections


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
        h = nn.Dense(4 * WIDTH, kernel_init=NORMAL, bias_init=jinit.zeros)(h)
        x = x + nn.Dense(WIDTH, kernel_init=RESIDUAL, bias_init=jinit.zeros)(nn.gelu(h))
        return x


class GPT(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(VOCAB, WIDTH, embedding_init=NORMAL)(tokens)
        for _ in range(LAYERS):
            x = Block()(x)
        return nn.Dense(VOCAB)(nn.LayerNorm()(x))  # Flax's default lecun_normal: drawn too, with Flax's values


class NNXGPT(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(VOCAB, WIDTH, embedding_init=NORMAL, rngs=rngs)
        self.up = nnx.List([nnx.Linear(WIDTH, 4 * WIDTH, kernel_init=NORMAL, rngs=rngs) for _ in range(LAYERS)])
        self.down = nnx.List([nnx.Linear(4 * WIDTH, WIDTH, kernel_init=RESIDUAL, rngs=rngs) for _ in range(LAYERS)])


def main():
    key, tokens = jax.random.key(0), jnp.zeros((1, 16), jnp.int32)
    model = GPT()
    ours = jinit.flax.init(model, key, tokens)
    theirs = model.init(key, tokens)
    equal = jax.tree.map(jnp.array_equal, ours, theirs)
    if not all(jax.tree.leaves(equal)):
        raise SystemExit("jinit.flax.init differs from model.init")
    count = sum(x.size for x in jax.tree.leaves(ours))
    print(f"linen: {count:,} parameters, bitwise model.init's")

    built = nnx.state(jinit.flax.build(lambda: NNXGPT(nnx.Rngs(0))))
    eager = nnx.state(NNXGPT(nnx.Rngs(0)))
    if not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, built, eager))):
        raise SystemExit("jinit.flax.build differs from eager construction")
    print(f"NNX: {sum(x.size for x in jax.tree.leaves(built)):,} parameters, bitwise eager construction's")
    print("Flax models initialized by jinit: bitwise model.init and eager NNX construction.")


if __name__ == "__main__":
    main()
