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
