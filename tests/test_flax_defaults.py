"""Flax's own initializers and its layers' defaults, through jinit: the same values.

`flax.linen.initializers` and `flax.nnx.initializers` re-export JAX's initializers (covered by
tests/test_drop_in.py) and add ``zeros_init()`` and ``ones_init()``. Each of Flax's layers below is built with its
default initializers and with their jinit equivalents (the table names every ``*_init`` argument the layer has, so
a default Flax adds fails here until it is listed), and initialized eagerly, under `jax.jit`, and by
`jinit.flax.init` / `jinit.flax.build`: bitwise the same parameters each way.
"""

import inspect

import pytest

pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx

import jinit
import jinit.flax

KEY = jax.random.key(0)
LECUN, ZEROS, ONES, ORTHO = jinit.lecun_normal(), jinit.zeros, jinit.ones, jinit.orthogonal()
EMBED = jinit.variance_scaling(1.0, "fan_in", "normal", out_axis=0)  # Flax's `default_embed_init`
DENSE = {"kernel_init": LECUN, "bias_init": ZEROS}
NORM = {"bias_init": ZEROS, "scale_init": ONES}
CELL = {"kernel_init": LECUN, "recurrent_kernel_init": ORTHO, "bias_init": ZEROS, "carry_init": ZEROS}
ATTENTION = {"kernel_init": LECUN, "bias_init": ZEROS, "out_kernel_init": None, "out_bias_init": None}


def _bitwise(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def _x(shape):
    return jnp.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)


# (layer, how to build it with initializers given as keyword arguments, its input, jinit's equivalents)
LINEN = [
    (nn.Dense, lambda **i: nn.Dense(5, **i), _x((2, 3)), DENSE),
    (nn.DenseGeneral, lambda **i: nn.DenseGeneral((2, 3), axis=(-2, -1), **i), _x((2, 4, 3)), DENSE),
    (nn.Einsum, lambda **i: nn.Einsum((3, 4), "ab,bc->ac", **i), _x((2, 3)), DENSE),
    (nn.Conv, lambda **i: nn.Conv(4, (3, 3), **i), _x((1, 6, 6, 3)), DENSE),
    (nn.ConvTranspose, lambda **i: nn.ConvTranspose(4, (3, 3), **i), _x((1, 6, 6, 3)), DENSE),
    (nn.Embed, lambda **i: nn.Embed(11, 6, **i), jnp.arange(4), {"embedding_init": EMBED}),
    (nn.LayerNorm, lambda **i: nn.LayerNorm(**i), _x((2, 5)), NORM),
    (nn.GroupNorm, lambda **i: nn.GroupNorm(num_groups=2, **i), _x((2, 3, 4)), NORM),
    (nn.RMSNorm, lambda **i: nn.RMSNorm(**i), _x((2, 5)), {"scale_init": ONES}),
    (nn.BatchNorm, lambda **i: nn.BatchNorm(use_running_average=False, **i), _x((4, 5)), NORM),
    (
        nn.MultiHeadDotProductAttention,
        lambda **i: nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, **i),
        _x((2, 3, 8)),
        ATTENTION,
    ),
    *(
        (cell, lambda cell=cell, **i: nn.RNN(cell(5, **i)), _x((2, 3, 4)), CELL)
        for cell in (nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell, nn.SimpleCell)
    ),
    (
        nn.MGUCell,
        lambda **i: nn.RNN(nn.MGUCell(5, **i)),
        _x((2, 3, 4)),
        {"kernel_init": LECUN, "recurrent_kernel_init": ORTHO, "forget_bias_init": ONES,
         "activation_bias_init": ZEROS, "carry_init": ZEROS},
    ),
]  # fmt: skip


@pytest.mark.parametrize("layer, build, x, equivalents", LINEN, ids=[entry[0].__name__ for entry in LINEN])
def test_linen_defaults(layer, build, x, equivalents):
    fields = {name for name in layer.__dataclass_fields__ if name.endswith("_init")}
    assert set(equivalents) == fields, "a default initializer of Flax's is not in the table"
    ours = build(**{name: init for name, init in equivalents.items() if init is not None})
    theirs = build()
    expected = theirs.init(KEY, x)
    assert _bitwise(ours.init(KEY, x), expected)
    assert _bitwise(jax.jit(ours.init)(KEY, x), expected)
    assert _bitwise(jinit.flax.init(ours, KEY, x), expected)


NNX = [
    (nnx.Linear, lambda r, **i: nnx.Linear(3, 5, rngs=r, **i), DENSE),
    (nnx.LinearGeneral, lambda r, **i: nnx.LinearGeneral((4, 3), (2, 3), axis=(-2, -1), rngs=r, **i), DENSE),
    (nnx.Einsum, lambda r, **i: nnx.Einsum("ab,bc->ac", (3, 4), rngs=r, **i), DENSE),
    (nnx.Conv, lambda r, **i: nnx.Conv(3, 4, (3, 3), rngs=r, **i), DENSE),
    (nnx.ConvTranspose, lambda r, **i: nnx.ConvTranspose(3, 4, (3, 3), rngs=r, **i), DENSE),
    (nnx.Embed, lambda r, **i: nnx.Embed(11, 6, rngs=r, **i), {"embedding_init": EMBED}),
    (nnx.LayerNorm, lambda r, **i: nnx.LayerNorm(5, rngs=r, **i), NORM),
    (nnx.GroupNorm, lambda r, **i: nnx.GroupNorm(4, num_groups=2, rngs=r, **i), NORM),
    (nnx.RMSNorm, lambda r, **i: nnx.RMSNorm(5, rngs=r, **i), {"scale_init": ONES}),
    (nnx.BatchNorm, lambda r, **i: nnx.BatchNorm(5, rngs=r, **i), NORM),
    (
        nnx.MultiHeadAttention,
        lambda r, **i: nnx.MultiHeadAttention(2, 8, qkv_features=8, decode=False, rngs=r, **i),
        ATTENTION,
    ),
    *(
        (cell, lambda r, cell=cell, **i: cell(4, 5, rngs=r, **i), {**CELL, "carry_init": None})
        for cell in (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell, nnx.SimpleCell)
    ),
]


# (None: an argument left at its default; NNX's cells warn that `carry_init` belongs to `initialize_carry`)
@pytest.mark.parametrize("layer, build, equivalents", NNX, ids=[entry[0].__name__ for entry in NNX])
def test_nnx_defaults(layer, build, equivalents):
    fields = {name for name in inspect.signature(layer.__init__).parameters if name.endswith("_init")}
    assert set(equivalents) == fields, "a default initializer of Flax's is not in the table"
    inits = {name: init for name, init in equivalents.items() if init is not None}
    expected = nnx.state(build(nnx.Rngs(0)))
    assert _bitwise(nnx.state(build(nnx.Rngs(0), **inits)), expected)
    assert _bitwise(nnx.state(jinit.flax.build(lambda: build(nnx.Rngs(0), **inits))), expected)


@pytest.mark.parametrize("module", [nn.initializers, nnx.initializers], ids=["linen", "nnx"])
def test_flax_reexports(module):
    """Every initializer Flax exports is JAX's (covered by test_drop_in.py) or one of Flax's own, which jinit has
    with the same name and values."""
    own = {"zeros_init", "ones_init"}
    for name in dir(module):
        value = getattr(module, name)
        if name.startswith("_") or not inspect.isfunction(value):  # types and aliases (`Initializer`, `DtypeLike`)
            continue
        if name in own:
            ours, theirs = getattr(jinit, name)(), value()
            for shape, dtype in [((2, 3), None), (4, "bfloat16"), ((0, 2), "int32")]:
                expected = theirs(KEY, shape) if dtype is None else theirs(KEY, shape, dtype)
                assert _bitwise(ours(KEY, shape) if dtype is None else ours(KEY, shape, dtype), expected)
        elif getattr(jax.nn.initializers, name, None) is not value:
            pytest.fail(f"{module.__name__}.{name} is neither JAX's nor covered here")
