"""The rows (`jinit._src.rows`): many draws of the positioned stream in one kernel, each bitwise its key's own
draw. Which of a model's parameters a plan draws by them: tests/test_stacked.py."""

import gc

import jax
import numpy as np
import pytest

import jinit
from jinit._src import jax_draws, kernel, rows

from cases import CASES

SHAPES = [(3, (16, 64)), (2, (12, 16)), (1, (5, 64))]
"""(draws, shape) of the requests drawn together: 1024, 192 and 320 elements each, so rows of 64 elements."""
DTYPES = ["float32", "bfloat16", "float64", "complex64"]


def _law_cases():
    out = []
    for case in CASES:
        if not isinstance(case.init, jinit.Initializer):
            continue
        try:
            if all(case.init.law(shape, np.dtype(np.float32)) is not None for _, shape in SHAPES):
                out.append(case)
        except (TypeError, ValueError):  # a family with shapes of its own
            continue
    return out


LAWS = _law_cases()


def _one_of_each(cases):
    return list({type(case.init.law((16, 64), np.dtype(np.float32))): case for case in reversed(cases)}.values())


ONE_OF_EACH = {
    "float32": LAWS,
    "bfloat16": _one_of_each(LAWS),
    "float64": _one_of_each(LAWS),
    "complex64": _one_of_each([case for case in LAWS if case.complex_ok]),
}
"""The cases drawn in each dtype: every one in float32, one of each distribution class in the others."""


def _requests(init, dtype, legacy=False):
    keys, requests = [], []
    for i, (draws, shape) in enumerate(SHAPES):
        typed = jax.random.split(jax.random.key(i), draws)
        batch = jax.random.key_data(typed) if legacy else typed
        keys.append([jax.random.key_data(k) if legacy else k for k in typed])
        law = init.law(shape, np.dtype(dtype))
        requests.append(rows.Request(law, rows.key_words(batch), int(np.prod(shape)), (draws, *shape), np.dtype(dtype)))
    return keys, requests


def _bits(x):
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_row_is_its_keys_own_draw(dtype):
    """Every family with a law in float32, a case of each distribution class in the other dtypes, drawn together
    (one kernel, a loop per distribution)."""
    with jax.enable_x64(dtype == "float64"):
        cases, keys, requests = [], [], []
        for case in ONE_OF_EACH[dtype]:
            case_keys, case_requests = _requests(case.init, dtype)
            if not all(rows.drawable(r.law, r.n, r.dtype) for r in case_requests):  # (the plan's kernel draws it)
                assert dtype == "complex64" and case_requests[0].law.complex_op_by_op
                continue
            for (_, shape), layer_keys, request in zip(SHAPES, case_keys, case_requests, strict=True):
                cases.append((case, shape))
                keys.append(layer_keys)
                requests.append(request)
        assert len({rows._group(r) for r in requests}) >= 3  # (several distributions, so several loops)
        for (case, shape), layer_keys, leaf, request in zip(cases, keys, rows.draw(requests), requests, strict=True):
            expected = np.stack([np.asarray(case.init(k, shape, dtype)) for k in layer_keys])
            assert leaf.shape == request.shape and leaf.dtype == np.dtype(dtype), case.id
            np.testing.assert_array_equal(_bits(leaf), _bits(expected), err_msg=f"{case.id} {dtype} {shape}")


def test_legacy_keys_draw_the_same_rows():
    init = jinit.glorot_uniform()
    (_, typed), (_, legacy) = _requests(init, "float32"), _requests(init, "float32", legacy=True)
    for a, b in zip(rows.draw(typed), rows.draw(legacy), strict=True):
        np.testing.assert_array_equal(_bits(a), _bits(b))


def test_a_row_is_the_widest_power_of_two_that_divides_a_draw():
    assert [rows.width(n) for n in (4096, 1024, 192, 320, 64)] == [1024, 1024, 64, 64, 64]
    assert [rows.width(n) for n in (100, 32, 0)] == [None, None, None]


def test_the_kernel_compiles_per_number_of_rows_not_per_shape():
    law = jinit.normal(0.3).law((4, 256), np.dtype(np.float32))  # (normal's law is the same for every shape)
    assert law is not None
    keys = jax.random.split(jax.random.key(3), 2)

    def request(shape):
        return rows.Request(law, rows.key_words(keys), int(np.prod(shape)), (2, *shape), np.dtype(np.float32))

    def compiled():
        return rows._fill.plain._cache_size() + rows._fill.fast._cache_size()

    rows.draw([request((4, 256))])
    before = compiled()
    out = rows.draw([request((8, 128))])[0]
    assert compiled() == before
    np.testing.assert_array_equal(out, np.stack([jinit.normal(0.3)(k, (8, 128)) for k in keys]))


def test_leaves_outlive_each_other_and_can_be_donated():
    init = jinit.he_normal()
    _, requests = _requests(init, "float32")
    drawn = rows.draw(requests)
    expected = [np.asarray(x).copy() for x in drawn]
    last = drawn.pop()
    del drawn
    gc.collect()
    np.testing.assert_array_equal(last, expected[-1])  # the shared buffer lives while a leaf does
    doubled = jax.jit(lambda x: x * 2, donate_argnums=0)(last)
    np.testing.assert_array_equal(doubled, expected[-1] * 2)


SHARING = [
    *(jinit.normal(s) for s in (1e-30, 1e-6, 0.02, 1.0, 3e4)),
    *(jinit.random_normal(m, s) for m, s in ((-5.0, 1e-3), (0.1, 0.02), (1e3, 7.0))),
    *(
        jinit.variance_scaling(scale, "fan_in", law)
        for scale in (1e-12, 0.1, 1.0, 2.0, 3.7, 1e5)
        for law in ("truncated_normal", "normal", "uniform")
    ),
    *(jinit.truncated_normal(s) for s in (1e-6, 0.02, 1.0, 3e3)),
    *(jinit.truncated_normal(s, lower=lo, upper=hi, mean=m) for s, lo, hi, m in (
        (0.5, -1.3, 0.7, 2.0), (7.0, 0.5, 3.0, -1e3), (1e-3, -5.180441856384277, 5.360490322113037, 0.1))),
    *(jinit.uniform(s) for s in (1e-6, 0.05, 1.0, 1e3)),
    *(jinit.random_uniform(lo, hi) for lo, hi in ((-1e-3, 1e-3), (-0.3, 0.5), (0.0, 1.0), (-1e3, -1.0))),
    # JAX's own draws, as `jinit._src.jax_draws` finds them (float32 and float64 only)
    *(jax_draws.JaxDraw("_normal", (), f) for f in (1e-30, -1e-6, 0.02, 1.0, 3e4)),
    *(jax_draws.JaxDraw("_uniform", (-1.0, 1.0), f) for f in (1e-6, 0.3, 7e3)),
    jax_draws.JaxDraw("_uniform", (0.0, 1.0), 0.3),
    *(jax_draws.JaxDraw("_truncated_normal", (-2.0, 2.0), f) for f in (1e-30, -1e-6, 0.05, 1.14, 3e4)),
    # a bound near ±5.3, whose erf rounds otherwise in a loop's own erf (given as `erf_bounds` computes it, exact)
    *(jax_draws.JaxDraw("_truncated_normal", b, 0.05) for b in ((-5.180441856384277, 5.360490322113037),
                                                                (-0.6984464526176453, 5.341082572937012))),
]  # fmt: skip
"""Laws of the classes that share loops (`Distribution.per_row`), with hyperparameters from tiny to huge."""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64", "complex64"])
def test_laws_of_a_class_share_one_loop_each_row_drawn_with_its_own(dtype):
    """Under a checked jaxlib the laws of one class are drawn by one loop, their hyperparameters one per row; each
    leaf is still bitwise its initializer's own draw, in every dtype (a division by a constant, as in the
    truncated normal's scale, would round differently batched; see `distributions._divide`)."""
    shape = (8, 128)
    with jax.enable_x64(dtype == "float64"):
        inits, keys, requests = [], [], []
        for i, init in enumerate(SHARING):
            try:
                law = init.law(shape, np.dtype(dtype))
            except (TypeError, ValueError):  # (no complex form)
                continue
            if law is None or not rows.drawable(law, 1024, np.dtype(dtype)):
                continue
            assert type(law).per_row, law
            layer_keys = jax.random.split(jax.random.key(i), 2)
            inits.append(init)
            keys.append(layer_keys)
            requests.append(rows.Request(law, rows.key_words(layer_keys), 1024, (2, *shape), np.dtype(dtype)))
        classes = {(type(r.law), jax.tree.structure(r.law)) for r in requests}
        assert len(requests) > 2 * len(classes)  # (several laws of each class)
        laws = {(jax.tree.structure(r.law), rows._hyperparameters(r.law)) for r in requests}
        assert len({rows._group(r) for r in requests}) == (len(classes) if kernel.checked_jaxlib() else len(laws))
        for init, layer_keys, leaf in zip(inits, keys, rows.draw(requests), strict=True):
            expected = np.stack([np.asarray(init(k, shape, dtype)) for k in layer_keys])
            np.testing.assert_array_equal(_bits(leaf), _bits(expected), err_msg=f"{init} {dtype}")
