"""The rows (`jinit._src.rows`): many draws of the positioned stream in one kernel, each bitwise its key's own
draw; a stacked model's parameters drawn by them where they apply, by the plan's kernel where they do not."""

import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit._src import plan, rows
from tests.cases import CASES

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
    """Every family with a law, drawn together (one kernel, a group per distribution)."""
    with jax.enable_x64(dtype == "float64"):
        cases, keys, requests = [], [], []
        for case in LAWS:
            if dtype == "complex64" and not case.complex_ok:
                continue
            case_keys, case_requests = _requests(case.init, dtype)
            if not all(rows.drawable(r.law, r.n, r.dtype) for r in case_requests):  # (the plan's kernel draws it)
                assert dtype == "complex64" and case_requests[0].law.complex_op_by_op
                continue
            for (_, shape), layer_keys, request in zip(SHAPES, case_keys, case_requests, strict=True):
                cases.append((case, shape))
                keys.append(layer_keys)
                requests.append(request)
        assert len({rows._group(r) for r in requests}) > 10  # (many distributions, so many groups)
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


# ----------------------------------------------------------------------------------------------- in a plan

flax = pytest.importorskip("flax", reason="flax is an optional extra: pip install -e '.[flax]'")
import flax.linen as nn  # noqa: E402

import jinit.flax  # noqa: E402


class Block(nn.Module):
    """Every parameter rowable: dimensions of 64, jinit's random families, zeros and ones."""

    @nn.compact
    def __call__(self, x, _=None):
        h = nn.LayerNorm(scale_init=jinit.ones, bias_init=jinit.zeros)(x)
        h = nn.DenseGeneral((2, 32), kernel_init=jinit.glorot_uniform(), bias_init=jinit.normal(1e-3))(h)
        h = nn.Dense(64, kernel_init=jinit.truncated_normal(0.02), bias_init=jinit.zeros)(h.reshape(*h.shape[:-2], 64))
        return x + h, None


class Model(nn.Module):
    bias: nn.initializers.Initializer = jinit.zeros

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(64, kernel_init=jinit.lecun_normal(), bias_init=self.bias)(x)
        x, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)()(x, None)
        return x


X = jnp.ones((2, 64))


@pytest.fixture
def spied(monkeypatch):
    """The calls of the rows and of the plan's kernel: how many leaves each drew."""
    counts = {"rows": 0, "kernel": 0}
    draw, kernel = rows.draw, plan._kernel

    def spy_rows(requests):
        counts["rows"] += len(requests)
        return draw(requests)

    class SpyKernel:
        def __call__(self, keys, *, plan, which):
            counts["kernel"] += len(which)
            return kernel(keys, plan=plan, which=which)

    monkeypatch.setattr(rows, "draw", spy_rows)
    monkeypatch.setattr(plan, "_kernel", SpyKernel())
    return counts


def same(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_a_scanned_model_is_drawn_by_the_rows_without_its_kernel(spied):
    model, key = Model(), jax.random.key(5)
    ours = jinit.flax.initializer(model)(key, X)
    assert same(ours, model.init(key, X))
    # the four random ones by the rows (lecun_normal; in the stack glorot_uniform, normal, truncated_normal), the
    # zeros and ones on the host, nothing by the plan's kernel
    assert spied == {"rows": 4, "kernel": 0}


def test_a_site_the_rows_cannot_draw_goes_to_the_kernel(spied):
    model, key = Model(bias=jinit.constant(0.5)), jax.random.key(6)  # a constant: no law
    assert same(jinit.flax.initializer(model)(key, X), model.init(key, X))
    assert spied == {"rows": 4, "kernel": 1}


def test_under_a_trace_the_kernel_draws_everything(spied):
    model, key = Model(), jax.random.key(7)
    init = jinit.flax.initializer(model)
    assert same(jax.jit(init)(key, X), model.init(key, X))
    assert spied["rows"] == 0 and spied["kernel"] > 0


def test_other_prng_implementations_go_to_the_kernel(spied):
    model, key = Model(), jax.random.key(8, impl="rbg")
    assert same(jinit.flax.initializer(model)(key, X), model.init(key, X))
    assert spied["rows"] == 0 and spied["kernel"] > 0


class Unrolled(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.Dense(64, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
        return nn.Dense(64, kernel_init=jinit.orthogonal(), bias_init=jinit.ones)(x)


def test_an_unrolled_models_parameters_are_drawn_by_the_rows_too(spied, monkeypatch):
    model, key = Unrolled(), jax.random.key(9)
    by_tree, draw = [], plan.tree.draw

    def spy_tree(leaves, keys, **kwargs):
        by_tree.extend(leaves)
        return draw(leaves, keys, **kwargs)

    monkeypatch.setattr(plan.tree, "draw", spy_tree)
    reports = []
    ours = jinit.flax.initializer(model)(key, X, progress=reports.append)
    assert same(ours, model.init(key, X))
    assert spied["rows"] == 3 and [leaf.path for leaf in by_tree] == ["params/Dense_3/kernel"]  # (no law)
    assert sorted(r.path for r in reports) == sorted(  # every parameter reported once, the last with the total
        jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in jax.tree_util.tree_leaves_with_path(ours)
    )
    assert reports[-1].leaves == reports[-1].total_leaves == 8
