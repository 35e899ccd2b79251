"""The rows (`jinit._src.rows`): many draws of the positioned stream in one kernel, each bitwise its key's own
draw. Which of a model's parameters a plan draws by them: tests/test_stacked.py."""

import gc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit._src import distributions, jax_draws, kernel, rows, threefry

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


@pytest.mark.parametrize("width", [64, 256])
def test_drawn_keys_give_the_bits_of_their_rows_own_keys(width):
    """A `threefry.drawn` key's bits, in each width a real sample reads and in any shape of its row's size, are
    those its row's `threefry.ROW` key gives (reshape-stable, the narrower ones truncated)."""
    data = np.random.default_rng(width).integers(0, 2**32, (5, 4), dtype=np.uint32)
    data[:, 2] = 0  # (a row's position: its high word, and a low one that no row carries past)
    data[:, 3] %= 2**31
    words = jax.jit(threefry.rows_words, static_argnums=1)(data, width)
    for dtype in (np.uint8, np.uint16, np.uint32):
        for shape in ((width,), (width // 8, 8)):

            @jax.jit
            def both(data, words, shape=shape, dtype=dtype):
                def bits(impl):
                    return jax.vmap(lambda d: jax.random.bits(jax.random.wrap_key_data(d, impl=impl), shape, dtype))

                return bits(threefry.ROW)(data), bits(threefry.drawn(width))(words)

            own, drawn = both(data, words)
            assert own.dtype == dtype and own.shape == (5, *shape)
            np.testing.assert_array_equal(drawn, own, err_msg=f"{dtype} {shape}")


@pytest.mark.parametrize(
    "use",
    [
        lambda k: jax.random.bits(k, (32,), np.uint32),  # (another size than the row's)
        lambda k: jax.random.bits(jax.random.split(k)[0], (64,), np.uint32),
        lambda k: jax.random.bits(jax.random.fold_in(k, 1), (64,), np.uint32),
    ],
    ids=["size", "split", "fold_in"],
)
def test_drawn_keys_refuse_what_their_words_cannot_give(use):
    words = np.zeros((2, 64), np.uint32)
    with pytest.raises(threefry.NotOneRow):
        jax.jit(lambda w: jax.vmap(use)(jax.random.wrap_key_data(w, impl=threefry.drawn(64))))(words)


def test_drawn_keys_refuse_64_bit_words():
    with jax.enable_x64(True), pytest.raises(threefry.NotOneRow):
        jax.jit(lambda w: jax.random.bits(jax.random.wrap_key_data(w, impl=threefry.drawn(64)), (64,), np.uint64))(
            np.zeros(64, np.uint32)
        )


@distributions._distribution
class _SplitNormal(distributions.Distribution):
    """A sampler that splits its key: no row's words give it (`threefry.NotOneRow`)."""

    stddev: Any

    def sample(self, key, shape, dtype):
        return jax.random.normal(jax.random.split(key)[1], shape, dtype) * jnp.asarray(self.stddev, dtype)


def test_a_sampler_that_reads_its_key_otherwise_is_drawn_from_its_rows_keys(monkeypatch):
    """Drawn with one whose words are hashed ahead, it makes the program draw every row from its `threefry.ROW`
    key instead, and both are still their keys' own draws."""
    hashed, fill = [], rows._fill

    def spy(*args, **kwargs):
        hashed.append(kwargs["hashed"])
        return fill(*args, **kwargs)

    monkeypatch.setattr(rows, "_fill", spy)
    keys = jax.random.split(jax.random.key(5), 3)
    laws = [_SplitNormal(np.float32(0.5)), distributions.Normal(np.float32(2.0))]
    requests = [rows.Request(law, rows.key_words(keys), 256, (3, 4, 64), np.dtype(np.float32)) for law in laws]
    drawn = rows.draw(requests)
    assert hashed == [(True, True), (False, False)]
    for law, leaf in zip(laws, drawn, strict=True):
        expected = np.stack([np.asarray(law.sample(k, (4, 64), np.float32)) for k in keys])
        np.testing.assert_array_equal(_bits(leaf), _bits(expected), err_msg=type(law).__name__)


def test_the_words_are_hashed_once_per_width(monkeypatch):
    """Distributions of one width share one hash of their rows' words; float64 draws (64-bit words) keep their
    rows' keys; every leaf is its keys' own draw."""
    hashes, words = [], threefry.rows_words

    def spy(data, width):
        hashes.append(width)
        return words(data, width)

    monkeypatch.setattr(threefry, "rows_words", spy)
    jax.clear_caches()  # (so that the program is traced here)
    keys = jax.random.split(jax.random.key(6), 2)
    cases = [
        (jinit.normal(0.02), (3, 64), np.float32),  # (rows of 64: 192 elements)
        (jinit.uniform(0.3), (1, 64), np.float32),
        (jinit.truncated_normal(0.1), (5, 64), jnp.bfloat16),
        (jinit.glorot_uniform(), (4, 256), np.float32),  # (rows of 1024)
        (jinit.normal(0.5), (2, 64), np.float64),
    ]
    with jax.enable_x64(True):
        requests = [
            rows.Request(init.law(shape, np.dtype(dtype)), rows.key_words(keys), int(np.prod(shape)), (2, *shape),
                         np.dtype(dtype))
            for init, shape, dtype in cases
        ]  # fmt: skip
        assert [rows.hashable(r.dtype) for r in requests] == [True, True, True, True, False]
        drawn = rows.draw(requests)
        assert len({rows._group(r) for r in requests}) == 5
        assert sorted(hashes) == [64, 1024]
        for (init, shape, dtype), leaf in zip(cases, drawn, strict=True):
            expected = np.stack([np.asarray(init(k, shape, dtype)) for k in keys])
            np.testing.assert_array_equal(_bits(leaf), _bits(expected), err_msg=f"{init} {dtype}")
