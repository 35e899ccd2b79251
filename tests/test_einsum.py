"""`einsum_axes`: the fan axes of an einsum kernel, checked four ways on one table of equations from real models.

1. Against the axes written out by hand in the table (`Case.in_axis`, `Case.out_axis`, `Case.batch_axis`).
2. Against Keras 3.15's own derivation: `keras.layers.EinsumDense.build` gives its kernel initializer
   `input_axes` and `output_axes` read from the equation. Keras has no batch axes (it counts them as output
   axes) and refuses some equations (`Case.keras` is False; the test checks that it does refuse them).
3. The fans, `compute_fans(kernel_shape, **einsum_axes(equation))`, against the products of sizes written out
   by hand (`Case.fans`), and against what they mean: with every element 1, each output element of the einsum
   is a sum of ``fan_in`` terms, and each element of the input's gradient a sum of ``fan_out``.
4. A sample of ``lecun_normal(**einsum_axes("btd,dnh->btnh"))`` has variance ``1 / d``.
"""

import math
import os
import re
import textwrap
from typing import NamedTuple

import jax
import numpy as np
import pytest
from scipy import stats

import jinit

FAMILY_ALPHA = 1e-3  # the probability that any statistical test of this file rejects a correct implementation
ELLIPSIS_DIMS = (2, 3)  # what `...` stands for in the input and the output


class Case(NamedTuple):
    source: str  # where the equation comes from
    equation: str
    in_axis: tuple[int, ...]
    out_axis: tuple[int, ...]
    batch_axis: tuple[int, ...]
    fans: tuple[str, str]  # fan_in and fan_out as products of the sizes of these letters ("" is 1)
    keras: bool = True  # whether keras.layers.EinsumDense takes the equation


CASES = [
    Case("Dense", "bd,df->bf", (0,), (1,), (), ("d", "f")),
    Case("attention q/k/v projection, BTD to BTNH", "btd,dnh->btnh", (0,), (1, 2), (), ("d", "nh")),
    Case("attention output projection, BTNH to BTD", "btnh,nhd->btd", (0, 1), (2,), (), ("nh", "d")),
    Case("attention q/k/v projection, BTD to BNTH", "btd,dnh->bnth", (0,), (1, 2), (), ("d", "nh")),
    Case("attention output projection, BNTH to BTD", "bnth,nhd->btd", (0, 1), (2,), (), ("nh", "d")),
    Case("Gemma q_einsum, kernel (N, D, H)", "BTD,NDH->BTNH", (1,), (0, 2), (), ("D", "NH")),
    Case("Gemma fused qkv_einsum, S = 3", "BTD,SNDH->SBTNH", (2,), (0, 1, 3), (), ("D", "SNH")),
    Case("Gemma kv_einsum (grouped-query), C = 2", "BSD,CKDH->CBSKH", (2,), (0, 1, 3), (), ("D", "CKH")),
    Case("per-head weights, n a batch axis", "bnth,nhk->bntk", (1,), (2,), (0,), ("h", "k")),
    Case("MoE experts as a batch of kernels", "ebd,edf->ebf", (1,), (2,), (0,), ("d", "f")),
    Case("Switch Transformer expert wi", "gecm,emh->gech", (1,), (2,), (0,), ("m", "h")),
    Case("Switch Transformer expert wo", "gech,ehm->gecm", (1,), (2,), (0,), ("h", "m")),
    Case("dense MoE: every token through every expert", "BSM,EMH -> BSEH", (1,), (0, 2), (), ("M", "EH")),
    Case("gated MLP, gate and up fused, g = 2", "btd,dgf->btgf", (0,), (1, 2), (), ("d", "gf")),
    Case("Gemma FeedForward gating_einsum, N = 2", "...F,NHF->...NH", (2,), (0, 1), (), ("F", "NH")),
    Case("Gemma FeedForward linear", "...H,HF->...F", (0,), (1,), (), ("H", "F")),
    Case("T5 dense", "...d,df->...f", (0,), (1,), (), ("d", "f")),
    Case("1x1 convolution, channels first", "bc...,cd->bd...", (0,), (1,), (), ("c", "d")),
    Case("convolution on extracted patches", "bhwpc,pco->bhwo", (0, 1), (2,), (), ("pc", "o")),
    Case("scoring head, vector kernel", "bd,d->b", (0,), (), (), ("d", "")),
    Case("ellipsis between named axes", "b...d,df->b...f", (0,), (1,), (), ("d", "f"), keras=False),
    Case("kernel axis summed away", "bd,dk->b", (0,), (), (), ("dk", "k"), keras=False),
    Case("kernel axis summed away, with an output", "bd,dkf->bf", (0,), (2,), (), ("dk", "fk"), keras=False),
]
IDS = [case.equation for case in CASES]


def _split(equation: str) -> tuple[str, str, str]:
    lhs_kernel, out = equation.replace(" ", "").split("->")
    lhs, kernel = lhs_kernel.split(",")
    return lhs, kernel, out


def _sizes(equation: str) -> dict[str, int]:
    """A different size for each letter: 2, 3, 4, ... in the order of first appearance."""
    letters = dict.fromkeys(c for c in equation if c.isalpha())
    return {c: i + 2 for i, c in enumerate(letters)}


def _shape(spec: str, sizes: dict[str, int]) -> tuple[int, ...]:
    before, _, after = spec.partition("...")
    middle = ELLIPSIS_DIMS if "..." in spec else ()
    return (*(sizes[c] for c in before), *middle, *(sizes[c] for c in after))


def _fan(letters: str, sizes: dict[str, int]) -> int:
    return math.prod(sizes[c] for c in letters)


# ----------------------------------------------------------------------------------------------- the table


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_axes(case):
    axes = jinit.einsum_axes(case.equation)
    assert axes == {"in_axis": case.in_axis, "out_axis": case.out_axis, "batch_axis": case.batch_axis}
    rank = len(_split(case.equation)[1])
    named = [a for value in axes.values() for a in value]
    assert all(type(a) is int and 0 <= a < rank for a in named)
    assert all(list(value) == sorted(value) for value in axes.values())
    assert len(set(named)) == len(named)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fans(case):
    sizes = _sizes(case.equation)
    shape = _shape(_split(case.equation)[1], sizes)
    expected = (_fan(case.fans[0], sizes), _fan(case.fans[1], sizes))
    assert jinit.compute_fans(shape, **jinit.einsum_axes(case.equation)) == expected


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fans_count_the_terms_of_each_sum(case):
    """With ones everywhere, an output element sums fan_in terms, an element of the input's gradient fan_out."""
    lhs, kernel, out = _split(case.equation)
    assert set(lhs.replace("...", "")) <= set(kernel + out), "an input axis summed outside the kernel"
    sizes = _sizes(case.equation)
    ones = {spec: np.ones(_shape(spec, sizes)) for spec in (lhs, kernel, out)}
    fan_in, fan_out = jinit.compute_fans(ones[kernel].shape, **jinit.einsum_axes(case.equation))
    forward = np.einsum(f"{lhs},{kernel}->{out}", ones[lhs], ones[kernel])
    backward = np.einsum(f"{out},{kernel}->{lhs}", ones[out], ones[kernel])  # the gradient of the input
    assert forward.shape == ones[out].shape and (forward == fan_in).all()
    assert backward.shape == ones[lhs].shape and (backward == fan_out).all()


@pytest.mark.parametrize("equation", ["btd,dnh->btnh", "ebd,edf->ebf", "bd,dkf->bf", "bd,d->b"])
def test_axes_are_variance_scaling_arguments_of_jinit_and_jax(equation):
    """jinit's and JAX's initializers take the axes, and agree (bitwise): with batch and summed-away axes too."""
    axes = jinit.einsum_axes(equation)
    shape = _shape(_split(equation)[1], _sizes(equation))
    key = jax.random.key(0)
    ours = jinit.glorot_uniform(**axes)(key, shape)
    theirs = jax.nn.initializers.glorot_uniform(**axes)(key, shape)
    np.testing.assert_array_equal(ours, theirs)


# ----------------------------------------------------------------------------------------------- Keras


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported
    return pytest.importorskip(
        "keras", minversion="3.15", reason="keras is an optional extra: pip install -e '.[keras]'"
    )


def _keras_layer(keras, equation: str):
    """A built `EinsumDense` of `equation` that records the axes it gives its kernel initializer."""

    class Recording(keras.layers.EinsumDense):
        def _update_kernel_initializer(self, input_axes, output_axes):
            self.given_axes = (list(input_axes), list(output_axes))
            return keras.initializers.Zeros()  # only the axes are checked: no random kernel to compile and draw

    lhs, _, out = _split(equation)
    sizes = _sizes(equation)
    # Keras's output_shape leaves out the batch axis: the first of the input, ahead of the letters or the `...`
    output_shape = [sizes[c] for c in out.replace("...", "")]
    if not out.startswith("..."):
        output_shape = output_shape[1:]
    layer = Recording(equation.replace(" ", ""), output_shape)
    layer.build(_shape(lhs, sizes))
    return layer


@pytest.mark.parametrize("case", [c for c in CASES if c.keras], ids=[c.equation for c in CASES if c.keras])
def test_keras_gives_its_initializer_the_same_axes(case):
    """Keras's input axes are jinit's; its output axes are jinit's output and batch axes together."""
    layer = _keras_layer(_keras(), case.equation)
    axes = jinit.einsum_axes(case.equation)
    assert layer.given_axes == (list(axes["in_axis"]), sorted(axes["out_axis"] + axes["batch_axis"]))


@pytest.mark.parametrize("case", [c for c in CASES if not c.keras], ids=[c.equation for c in CASES if not c.keras])
def test_keras_refuses(case):
    keras = _keras()
    with pytest.raises(ValueError, match=r"Invalid einsum equation|did not have a match"):
        _keras_layer(keras, case.equation)


# ----------------------------------------------------------------------------------------------- statistics

STATISTICAL_TESTS = 2
ALPHA = FAMILY_ALPHA / STATISTICAL_TESTS  # Bonferroni
D, N, H = 512, 8, 16  # 65,536 samples
TRUNCATED_STDDEV = 0.87962566103423978  # standard deviation of N(0, 1) truncated to [-2, 2]


def _projection_sample(init: jinit.Initializer) -> np.ndarray:
    return np.asarray(init(jax.random.key(7), (D, N, H)), np.float64).ravel()


def test_lecun_normal_of_a_projection_has_variance_one_over_d():
    """The truncated normal: mean(x**2) within the normal quantile of ALPHA of 1 / d, in exact standard errors."""
    x = _projection_sample(jinit.lecun_normal(**jinit.einsum_axes("btd,dnh->btnh")))
    dist = stats.truncnorm(-2.0, 2.0, scale=math.sqrt(1 / D) / TRUNCATED_STDDEV)
    second, fourth = dist.moment(2), dist.moment(4)
    assert math.isclose(second, 1 / D, rel_tol=1e-12)
    half_width = stats.norm.isf(ALPHA / 2) * math.sqrt((fourth - second**2) / x.size)
    assert abs(np.mean(x**2) - 1 / D) <= half_width
    assert abs(1 / (N * D) - 1 / D) > 10 * half_width  # the raw shape's fan_in = n * d would fail by far


def test_normal_variance_scaling_of_a_projection_has_variance_one_over_d():
    """The untruncated normal: sum(x**2) * d is chi-squared with x.size degrees of freedom."""
    init = jinit.variance_scaling(1.0, "fan_in", "normal", **jinit.einsum_axes("btd,dnh->btnh"))
    x = _projection_sample(init)
    low, high = stats.chi2.ppf(ALPHA / 2, x.size), stats.chi2.isf(ALPHA / 2, x.size)
    assert low <= np.sum(x**2) * D <= high
    assert not low <= np.sum(x**2) * N * D <= high  # nor with the raw shape's fan_in = n * d


# ----------------------------------------------------------------------------------------------- Flax


def test_the_docstrings_flax_example_runs():
    pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
    doc = jinit.einsum_axes.__doc__ or ""
    (block,) = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    namespace = {}
    exec(textwrap.dedent(block), namespace)
    expected = jinit.lecun_normal(in_axis=(0,), out_axis=(1, 2), batch_axis=())
    assert namespace["linen_layer"].kernel_init == expected
    nnx = namespace["nnx"]  # NNX keeps no initializer: its kernel is the one jinit draws from the same key
    kernel = expected(nnx.Rngs(0).params(), (512, 8, 64))
    np.testing.assert_array_equal(namespace["nnx_layer"].kernel[...], kernel)
    x = jax.numpy.ones((2, 3, 512))
    params = namespace["linen_layer"].init(jax.random.key(0), x)
    assert params["params"]["kernel"].shape == (512, 8, 64)


# ----------------------------------------------------------------------------------------------- errors

BAD = [  # (equation, what the message says)
    ("btd,dnh", "must have an explicit output after `->`"),
    ("", "must have an explicit output after `->`"),
    ("btd,dnh->btnh->bt", "must have one `->`"),
    ("btd->btd", "must have exactly two operands"),
    ("->", "must have exactly two operands"),
    ("btd,dnh,hk->btk", "must have exactly two operands"),
    ("btd,dn1->btn", "its kernel 'dn1' holds '1'"),
    ("btd,dnh->bt_nh", "its output 'bt_nh' holds '_'"),
    ("bt.d,dnh->btnh", "its input 'bt.d' holds '.'"),
    ("b....d,df->b...f", "its input 'b....d' holds '.'"),
    ("btd,dné->btn", "its kernel 'dné' holds 'é'"),
    ("......d,df->...f", "`...` at most once per operand; its input '......d'"),
    ("bdd,df->bf", "its input 'bdd' names 'd' twice"),
    ("btd,ddh->bth", "its kernel 'ddh' names 'd' twice"),
    ("btd,dnh->btnn", "its output 'btnn' names 'n' twice"),
    ("bd,d...->b...", "its kernel 'd...' holds `...`"),
    ("...d,df->f", "in both the input and the output, or in neither"),
    ("bd,df->...f", "in both the input and the output, or in neither"),
    ("btd,dnh->btnx", "the output axis 'x', which is in neither the input nor the kernel"),
]


@pytest.mark.parametrize("equation, problem", BAD, ids=[b[0] or "empty" for b in BAD])
def test_rejects(equation, problem):
    with pytest.raises(ValueError, match=re.escape(problem)) as info:
        jinit.einsum_axes(equation)
    message = str(info.value)
    assert message.startswith("Argument `equation` ")
    assert message.endswith(f"Received: equation={equation!r}")


@pytest.mark.parametrize("equation", [None, 42, b"bd,df->bf", ["bd", "df"]])
def test_rejects_what_is_not_a_string(equation):
    with pytest.raises(TypeError, match="Argument `equation` must be a string") as info:
        jinit.einsum_axes(equation)
    assert str(info.value).endswith(f"Received: equation={equation!r}")


def test_ignores_spaces_as_flax_does():
    assert jinit.einsum_axes(" b t d , d n h -> b t n h ") == jinit.einsum_axes("btd,dnh->btnh")
