"""compute_fans: Keras's rules for the default axes, JAX's for any axes, and no failure on zero sizes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax._src.nn.initializers import _compute_fans as jax_compute_fans  # the reference for non-default axes

import jinit

# (shape, axes, expected fans) derived by hand from the rules in the docstring
TABLE = [
    ((), {}, (1, 1)),
    ((7,), {}, (7, 7)),
    ((0,), {}, (0, 0)),
    ((3, 5), {}, (3, 5)),
    ((3, 3, 64, 128), {}, (3 * 3 * 64, 3 * 3 * 128)),
    ((5, 4, 8), {}, (5 * 4, 5 * 8)),
    ((2, 3, 3, 4, 5), {}, (2 * 3 * 3 * 4, 2 * 3 * 3 * 5)),
    ((128, 64, 3, 3), {"in_axis": 1, "out_axis": 0}, (64 * 9, 128 * 9)),  # PyTorch's (out, in, *kernel)
    ((4, 3, 5, 6), {"in_axis": (1, 2), "out_axis": -1, "batch_axis": 0}, (15, 6)),
    ((8, 16, 32), {"in_axis": 1, "out_axis": 2, "batch_axis": 0}, (16, 32)),
    ((0, 5), {}, (0, 5)),
    ((3, 3, 0, 4), {}, (0, 36)),
    ((6,), {"in_axis": 0, "out_axis": ()}, (6, 1)),
]


@pytest.mark.parametrize("shape, axes, expected", TABLE, ids=[f"{s}-{a}" for s, a, _ in TABLE])
def test_fans_table(shape, axes, expected):
    fans = jinit.compute_fans(shape, **axes)
    assert fans == expected and all(type(f) is int for f in fans)


@given(
    st.lists(st.integers(1, 6), min_size=2, max_size=5).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.permutations(range(len(shape))).map(lambda p: p[:3]),
        )
    )
)
def test_agrees_with_jax_for_rank_two_and_more(data):
    shape, (i, o, *batch) = data
    expected = jax_compute_fans(shape, i, o, tuple(batch))
    assert jinit.compute_fans(shape, i, o, tuple(batch)) == tuple(int(f) for f in expected)


axes = st.one_of(st.integers(-3, 2), st.lists(st.integers(-3, 2), max_size=3).map(tuple))


@given(st.lists(st.integers(1, 6), min_size=3, max_size=4).map(tuple), axes, axes, axes)
def test_overlapping_and_repeated_axes_are_jax_s(shape, i, o, b):
    """An axis named twice, or by two arguments (Flax's embedding: in_axis=-2, out_axis=0), counts as JAX counts
    it: the same floats, as ints where they are whole."""
    expected = jax_compute_fans(shape, i, o, b)
    fans = jinit.compute_fans(shape, i, o, b)
    assert fans == expected
    assert all(type(f) is (int if float(e).is_integer() else float) for f, e in zip(fans, expected, strict=True))


def test_flax_embedding_fans():
    assert jinit.compute_fans((1000, 64), out_axis=0) == (64, 64)
    assert jinit.compute_fans((10,), in_axis=0) == (1, 1)  # JAX: in and out are the one axis
    # in_size 2, out_size 3**3 = 27: receptive field 6 / 2 / 27, fans 2 and 27 times it
    assert jinit.compute_fans((2, 3), in_axis=0, out_axis=(1, 1, 1)) == (2 * (6 / 2 / 27), 3)
