"""jinit.haiku.to_haiku against the real Haiku: modules, get_parameter, transforms, state, errors."""

import pickle

import pytest

hk = pytest.importorskip("haiku", reason="dm-haiku is an optional extra: pip install -e '.[haiku]'")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jinit  # noqa: E402
from jinit.haiku import HaikuInitializer, to_haiku  # noqa: E402

KEY = jax.random.key(0)


def first_key_sample(init, shape, dtype=jnp.float32):
    """What `init` gives with the first key of a transform's sequence: the key to_haiku draws."""
    return hk.transform(lambda: init(hk.next_rng_key(), shape, dtype)).apply({}, KEY)


@pytest.mark.parametrize(
    "init",
    [jinit.glorot_uniform(), jinit.truncated_normal(0.5), jinit.orthogonal(), jax.nn.initializers.he_normal()],
    ids=["glorot_uniform", "truncated_normal", "orthogonal", "jax_he_normal"],  # a closure's repr has its address
)
def test_get_parameter_draws_the_transform_key(init):
    params = hk.transform(lambda: hk.get_parameter("w", (6, 4), init=to_haiku(init))).init(KEY)
    np.testing.assert_array_equal(params["~"]["w"], first_key_sample(init, (6, 4)))


def test_linear_and_conv():
    def forward(x):
        x = hk.Conv2D(4, 3, w_init=to_haiku(jinit.he_normal()), b_init=to_haiku(jinit.constant(0.1)))(x)
        return hk.Linear(3, w_init=to_haiku(jinit.lecun_uniform()), b_init=to_haiku(jinit.zeros))(x.reshape(2, -1))

    model = hk.transform(forward)
    x = jnp.ones((2, 5, 5, 2))
    params = model.init(KEY, x)
    assert params["conv2_d"]["w"].shape == (3, 3, 2, 4) and params["linear"]["w"].shape == (100, 3)
    np.testing.assert_array_equal(params["conv2_d"]["b"], np.full(4, 0.1, np.float32))
    assert float(jnp.abs(params["linear"]["w"]).max()) <= (3 / 100) ** 0.5
    assert model.apply(params, None, x).shape == (2, 3)


def test_transform_with_state_and_dtypes():
    def forward():
        w = hk.get_parameter("w", (3, 3), jnp.bfloat16, init=to_haiku(jinit.identity(2.0)))
        count = hk.get_state("count", (), jnp.int32, init=to_haiku(jinit.zeros))
        hk.set_state("count", count + 1)
        return w

    model = hk.transform_with_state(forward)
    params, state = model.init(KEY)
    assert params["~"]["w"].dtype == jnp.bfloat16 and state["~"]["count"] == 0
    np.testing.assert_array_equal(params["~"]["w"].astype(np.float32), 2 * np.eye(3))
    _, state = model.apply(params, state, None)
    assert state["~"]["count"] == 1


def test_keyless_initializers_need_no_rng():
    params = hk.transform(lambda: hk.get_parameter("b", (4,), init=to_haiku(jinit.ones))).init(None)
    np.testing.assert_array_equal(params["~"]["b"], np.ones(4, np.float32))


def test_clear_errors_outside_a_transform_and_without_a_key():
    with pytest.raises(ValueError, match=r"hk.next_rng_key.*hk.transform"):
        to_haiku(jinit.glorot_uniform())((3, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"hk.next_rng_key.*pass a key to `init`"):
        hk.transform(lambda: hk.get_parameter("w", (2,), init=to_haiku(jinit.normal()))).init(None)
    with pytest.raises(TypeError, match=r"`init`.*Received: init='glorot_uniform'"):
        to_haiku("glorot_uniform")  # type: ignore[arg-type]


def test_adapted_initializers_are_values():
    a, b = to_haiku(jinit.he_uniform()), to_haiku(jinit.he_uniform())
    assert isinstance(a, HaikuInitializer) and a == b and hash(a) == hash(b) and a != to_haiku(jinit.he_normal())
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == "HaikuInitializer(init=he_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype=None))"
    assert jinit.haiku.to_haiku is to_haiku  # `jinit.haiku` loads on first use
