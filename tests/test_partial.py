"""Initializing only what a checkpoint lacks: ``existing=`` of `init_tree` and of the framework integrations.

Every test compares "initialize what is missing" with "initialize everything, then overlay the existing arrays",
bitwise, and checks that the given arrays come back as the same objects and that nothing else is drawn.
"""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit._src import engine, plan, tree

KEY = jax.random.key(0)


@dataclasses.dataclass
class Block:
    kernel: jinit.ParamSpec
    bias: jinit.ParamSpec


jax.tree_util.register_dataclass(Block, data_fields=["kernel", "bias"], meta_fields=[])


def model(head=3):
    """Dicts, a list, a tuple, a registered dataclass, a None, a foreign initializer and a keyless one."""
    return {
        "embed": jinit.ParamSpec((11, 6), jinit.normal(0.02)),
        "blocks": [
            {"dense": Block(jinit.ParamSpec((6, 6), jinit.glorot_uniform()), jinit.ParamSpec((6,), jinit.zeros)),
             "norm": (jinit.ParamSpec((6,), jinit.ones, "bfloat16"), None),
             "gate": jinit.ParamSpec((6, 2), jax.nn.initializers.lecun_normal())}  # type: ignore[arg-type]
            for _ in range(3)
        ],
        "head": {"kernel": jinit.ParamSpec((6, head), jinit.orthogonal()),
                 "bias": jinit.ParamSpec((head,), jinit.zeros)},
    }  # fmt: skip


def flat(tree, is_leaf=None):
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_leaf)
    return {jax.tree_util.keystr(p, simple=True, separator="/"): x for p, x in leaves}


def bits(x):
    x = jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    return np.atleast_1d(np.asarray(x)).view(np.uint8)


def assert_bitwise(a, b, is_leaf=None):
    fa, fb = flat(a, is_leaf), flat(b, is_leaf)
    assert sorted(fa) == sorted(fb)
    differ = [p for p in fa if fa[p].dtype != fb[p].dtype or not np.array_equal(bits(fa[p]), bits(fb[p]))]
    assert not differ, differ


def without(tree, *paths):
    """`tree` (nested dicts and lists) with the leaves at `paths` set to None."""
    keep = flat(tree)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: None if jax.tree_util.keystr(p, simple=True, separator="/") in paths else x, tree
    ) if all(p in keep for p in paths) else pytest.fail(f"no such paths: {paths}")  # fmt: skip


# ------------------------------------------------------------------------------------------------ init_tree


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_init_tree_draws_only_what_is_missing_and_agrees_with_init_then_overlay(jit):
    specs = model()
    full = jinit.init_tree(KEY, specs)
    checkpoint = jinit.init_tree(jax.random.key(1), specs)  # other values: they must come through unchanged
    missing = ("embed", "blocks/1/dense/kernel", "blocks/2/gate", "blocks/0/norm/0", "head/kernel", "head/bias")
    existing = without(checkpoint, *missing)
    expected = jax.tree.map(lambda e, f: f if e is None else e, existing, full, is_leaf=lambda x: x is None)
    init = jax.jit(jinit.init_tree) if jit else jinit.init_tree  # specs: a pytree without leaves
    out = init(KEY, specs, existing=existing)
    assert_bitwise(out, expected)
    assert jax.tree.structure(out) == jax.tree.structure(full)
    if not jit:  # passed through, not copied
        given = flat(existing)
        assert all(flat(out)[path] is array for path, array in given.items())
        drawn = []
        jinit.init_tree(KEY, specs, existing=existing, progress=drawn.append)
        assert sorted(p.path for p in drawn) == sorted(missing) and drawn[-1].total_leaves == len(missing)


def test_missing_dict_keys_and_none_leaves_mean_the_same():
    specs = model()
    checkpoint = jinit.init_tree(jax.random.key(1), specs)
    lacking = {"embed": checkpoint["embed"], "blocks": checkpoint["blocks"]}  # a checkpoint without the new head
    nones = {**lacking, "head": {"kernel": None, "bias": None}}
    a, b = jinit.init_tree(KEY, specs, existing=lacking), jinit.init_tree(KEY, specs, existing=nones)
    assert_bitwise(a, b)
    assert_bitwise(a["head"], jinit.init_tree(KEY, specs)["head"])
    # matched by path: a checkpoint's plain dicts stand for the specs' dataclasses and lists
    as_dicts = {"blocks": {"0": {"dense": {"kernel": checkpoint["blocks"][0]["dense"].kernel}}}}
    out = jinit.init_tree(KEY, specs, existing=as_dicts)
    assert out["blocks"][0]["dense"].kernel is checkpoint["blocks"][0]["dense"].kernel


def test_everything_present_draws_nothing_and_nothing_present_is_a_full_init(monkeypatch):
    specs = model()
    checkpoint = jinit.init_tree(jax.random.key(1), specs)
    assert_bitwise(jinit.init_tree(KEY, specs, existing={}), jinit.init_tree(KEY, specs))
    monkeypatch.setattr(engine, "draw", lambda *a, **k: pytest.fail("a present parameter was drawn"))
    out = jinit.init_tree(KEY, specs, existing=checkpoint)
    assert all(flat(out)[p] is x for p, x in flat(checkpoint).items())


def test_a_large_group_split_by_the_checkpoint_keeps_its_values():
    """The full tree draws a group of >= engine.WHOLE elements by its shape's kernel; the two missing ones are
    drawn by the stream: the same values."""
    n = engine.WHOLE // (512 * 512) + 1
    specs = {f"h{i}": jinit.ParamSpec((512, 512), jinit.truncated_normal(0.02)) for i in range(n)}
    full = jinit.init_tree(KEY, specs)
    existing = {name: x for name, x in full.items() if name not in ("h0", f"h{n - 1}")}
    out = jinit.init_tree(KEY, specs, existing=existing)
    assert_bitwise(out, full)


def test_numpy_arrays_pass_through():
    specs = {"w": jinit.ParamSpec((2, 3), jinit.normal()), "b": jinit.ParamSpec((3,), jinit.zeros)}
    w = np.ones((2, 3), np.float32)
    out = jinit.init_tree(KEY, specs, existing={"w": w})
    assert out["w"] is w and isinstance(out["b"], jax.Array)


SPECS = {"a": jinit.ParamSpec((3, 4), jinit.normal()), "b": {"c": jinit.ParamSpec((4,), jinit.zeros)}}
EXISTING_ERRORS = [
    ({"a": jnp.ones((4, 3))}, ValueError,
     r"Parameter 'a': `existing` has shape \(4, 3\), the parameter \(3, 4\)\. "
     r"Received: shape=\(4, 3\), expected shape=\(3, 4\)"),
    ({"a": jnp.ones((3, 4), jnp.bfloat16)}, TypeError,
     r"Parameter 'a': `existing` has dtype bfloat16, the parameter float32.*Received: dtype=bfloat16, "
     r"expected dtype=float32"),
    ({"b": {"c": 0.0}}, TypeError, r"`existing` must have arrays as leaves.*'b/c' is not\. Received: b/c=0\.0"),
    ({"b": {"d": jnp.ones(4)}, "x": None, "y": jnp.ones(2)}, ValueError,
     r"`existing` has paths that are not parameters of `specs`.*Received: 2 path\(s\) 'b/d', 'y'$"),
    ({"b": jnp.ones(4)}, ValueError, r"not parameters of `specs`.*such as 'b/c'.*Received: 1 path\(s\) 'b'$"),
    ({"a": jax.ShapeDtypeStruct((3, 4), jnp.float32)}, TypeError, r"must have arrays as leaves.*'a'"),
]  # fmt: skip


@pytest.mark.parametrize("existing, error, message", EXISTING_ERRORS)
def test_init_tree_rejects_a_bad_checkpoint_before_allocating(existing, error, message, no_arrays):
    with pytest.raises(error, match=message):
        jinit.init_tree(KEY, SPECS, existing=existing)


def test_a_present_parameter_of_an_unusable_dtype_names_its_path(no_arrays):
    specs = {"w": jinit.ParamSpec((2,), jinit.normal(), "int32")}
    with pytest.raises(TypeError, match=r"Parameter 'w': `normal` needs"):
        jinit.init_tree(KEY, specs, existing={"w": np.zeros(2, np.int32)})


def test_shardings_of_present_parameters_are_checked():
    mesh = jax.make_mesh((1,), ("x",))
    specs = {"w": jinit.ParamSpec((2, 4), jinit.normal(), sharding=jax.P(None, "x"))}
    w = jax.device_put(jnp.ones((2, 4)), jax.NamedSharding(mesh, jax.P(None, "x")))
    assert jinit.init_tree(KEY, specs, mesh=mesh, existing={"w": w})["w"] is w
    with pytest.raises(ValueError, match=r"Parameter 'w': `existing` is a NumPy array, the parameter is laid out as"):
        jinit.init_tree(KEY, specs, mesh=mesh, existing={"w": np.ones((2, 4), np.float32)})


SHARDED = """
import jax, jax.numpy as jnp, numpy as np, flax.linen as nn, jinit, jinit.flax
mesh = jax.make_mesh((2,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
specs = {"w": jinit.ParamSpec((4, 4), jinit.normal(), sharding=jax.P(None, "x")),
         "v": jinit.ParamSpec((4, 4), jinit.normal(), sharding=jax.P("x"))}
full = jinit.init_tree(jax.random.key(0), specs, mesh=mesh)
out = jinit.init_tree(jax.random.key(0), specs, mesh=mesh, existing={"w": full["w"]})
assert out["w"] is full["w"] and out["v"].sharding.is_equivalent_to(full["v"].sharding, 2)
assert np.array_equal(out["v"], full["v"])
wrong = jax.device_put(full["w"], jax.NamedSharding(mesh, jax.P("x")))
try:
    jinit.init_tree(jax.random.key(0), specs, mesh=mesh, existing={"w": wrong})
    raise SystemExit("no error")
except ValueError as err:
    assert "Parameter 'w'" in str(err) and repr(jax.P("x")) in str(err) and repr(jax.P(None, "x")) in str(err), err
dense = nn.Dense(4, kernel_init=nn.with_partitioning(jinit.glorot_uniform(), (None, "x")))
x = jnp.ones((2, 4))
variables = jinit.flax.init(dense, jax.random.key(0), x, mesh=mesh)
try:
    jinit.flax.init(dense, jax.random.key(0), x, mesh=mesh, existing={"params": {"kernel": wrong}})
    raise SystemExit("no error")
except ValueError as err:
    assert "Parameter 'params/kernel'" in str(err), err
kernel = variables["params"]["kernel"].value
out = jinit.flax.init(dense, jax.random.key(0), x, mesh=mesh, existing={"params": {"kernel": kernel}})
assert out["params"]["kernel"].value is kernel
print("ok")
"""


def test_shardings_on_two_devices():
    pytest.importorskip("flax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    script = textwrap.dedent(SHARDED)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout[-3000:] + proc.stderr[-5000:]


# ------------------------------------------------------------------------------------------------ Flax linen


def linen_model():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            h = nn.Dense(8, kernel_init=jinit.normal(0.02), bias_init=jinit.zeros)(x)
            return x + nn.Dense(8, kernel_init=jinit.normal(0.01))(h), None

    class Model(nn.Module):
        classes: int = 2

        @nn.compact
        def __call__(self, x):
            x = nn.Dense(8, kernel_init=nn.with_partitioning(jinit.he_normal(), (None, "model")))(x)
            x = nn.Dense(8)(x)  # Flax's own initializers: lecun_normal drawn by the engine, zeros by the program
            x, _ = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)(name="blocks")(
                x, None
            )
            x = nn.BatchNorm(use_running_average=False)(x)
            return nn.Dense(self.classes, kernel_init=jinit.glorot_uniform(), name="head")(x)

    return Model, jnp.ones((4, 5))


def overlay(full, existing, is_leaf=None):
    """`full` with the arrays of `existing` (matched by path) in place of its own."""
    given = flat(existing, is_leaf)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: given.get(jax.tree_util.keystr(p, simple=True, separator="/"), x), full, is_leaf=is_leaf
    )


@pytest.mark.parametrize("path_keys", [False, True])
def test_linen_init_draws_and_computes_only_what_is_missing(path_keys):
    import flax.linen as nn

    import jinit.flax

    Model, x = linen_model()
    model = Model()
    full = jinit.flax.init(model, KEY, x, path_keys=path_keys)
    if not path_keys:
        assert_bitwise(full, model.init(KEY, x))
    old = jinit.flax.init(model, jax.random.key(1), x)  # the checkpoint: other values
    params = {k: v for k, v in old["params"].items() if k not in ("head", "Dense_1")}  # a new head, a lost layer
    init = jinit.flax.initializer(model, path_keys=path_keys)
    out = init(KEY, x, existing={"params": params})
    assert_bitwise(out, overlay(full, {"params": params}))
    assert out["params"]["blocks"]["Dense_0"]["kernel"] is params["blocks"]["Dense_0"]["kernel"]
    assert out["params"]["Dense_0"]["kernel"].value is params["Dense_0"]["kernel"].value  # a box: its array
    assert isinstance(out["params"]["Dense_0"]["kernel"], nn.Partitioned)
    # unboxed arrays stand for boxed ones
    unboxed = init(KEY, x, existing={"params": nn.unbox(params)})
    assert_bitwise(unboxed, out)
    # the program no longer computes the present leaves, nor draws them
    plan = init.planned.plan((KEY, x), {})
    [pruned] = plan.partial.values()
    paths = plan.program.paths
    assert sorted(paths[s.leaf] for s in pruned.found.sites) == ["params/Dense_1/kernel", "params/head/kernel"]
    assert sorted(paths[p] for p in pruned.found.rest) == [
        "batch_stats/BatchNorm_0/mean", "batch_stats/BatchNorm_0/var", "params/Dense_1/bias", "params/head/bias",
    ]  # fmt: skip
    assert len(pruned.found.jaxpr.eqns) < len(plan.found.jaxpr.eqns)
    drawn = []
    init(KEY, x, existing={"params": params}, progress=drawn.append)
    assert sorted(p.path for p in drawn) == ["params/Dense_1/kernel", "params/head/kernel"]
    assert len(plan.partial) == 1  # a second call with the same checkpoint reuses the pruned plan


def test_linen_only_the_stacked_layers_missing():
    import jinit.flax

    Model, x = linen_model()
    model = Model()
    full = model.init(KEY, x)
    existing = {"params": {k: v for k, v in full["params"].items() if k != "blocks"}, "batch_stats": None}
    init = jinit.flax.initializer(model)
    assert_bitwise(init(KEY, x, existing=existing), full)
    [pruned] = init.planned.plan((KEY, x), {}).partial.values()
    assert not any(eqn.primitive.name == "dot_general" for eqn in pruned.found.jaxpr.eqns)


def test_linen_rejects_a_checkpoint_that_does_not_fit(monkeypatch):
    import jinit.flax

    Model, x = linen_model()
    head = {"kernel": jnp.zeros((8, 3)), "bias": jnp.zeros(3)}
    for name in ("draw", "_eager"):
        monkeypatch.setattr(tree, name, lambda *a, **k: pytest.fail("drawn before the error"))
    monkeypatch.setattr(plan, "_kernel", lambda *a, **k: pytest.fail("drawn before the error"))
    with pytest.raises(ValueError, match=r"Parameter 'params/head/bias': `existing` has shape \(3,\), the param"):
        jinit.flax.init(Model(), KEY, x, existing={"params": {"head": head}})
    with pytest.raises(TypeError, match=r"Parameter 'params/head/bias': `existing` has dtype int32, the param"):
        jinit.flax.init(Model(classes=3), KEY, x, existing={"params": {"head": {"bias": jnp.zeros(3, "int32")}}})
    # the collection level forgotten: the message shows where the parameter is
    with pytest.raises(ValueError, match=r"such as 'params/head/bias'.*Received: 2 path\(s\) 'head/bias', 'head/k"):
        jinit.flax.init(Model(), KEY, x, existing={"head": head})


# ------------------------------------------------------------------------------------------------ Flax NNX


def test_nnx_build_from_a_state_or_a_pure_dict():
    nnx = pytest.importorskip("flax.nnx")
    import jinit.flax

    class Net(nnx.Module):
        def __init__(self, rngs, classes=10):
            self.embed = nnx.Embed(100, 16, embedding_init=jinit.normal(0.02), rngs=rngs)
            self.mid = nnx.Linear(16, 16, rngs=rngs)  # Flax's own initializer
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)
            self.head = nnx.Linear(16, classes, kernel_init=jinit.glorot_uniform(), bias_init=jinit.zeros, rngs=rngs)

    reference = Net(nnx.Rngs(0))
    checkpoint = nnx.state(Net(nnx.Rngs(1)), nnx.Param)
    pure = nnx.to_pure_dict(checkpoint)
    del pure["head"]
    built = jinit.flax.build(lambda: Net(nnx.Rngs(0)), existing=pure)
    assert_bitwise(nnx.to_pure_dict(nnx.state(built)), overlay(nnx.to_pure_dict(nnx.state(reference)), pure))
    assert built.embed.embedding.get_value() is pure["embed"]["embedding"]
    state = nnx.State({k: v for k, v in checkpoint.items() if k != "head"})
    built = jinit.flax.build(lambda: Net(nnx.Rngs(0)), existing=state)
    assert built.mid.kernel.get_value() is state["mid"]["kernel"].get_value()
    np.testing.assert_array_equal(built.head.kernel[...], reference.head.kernel[...])
    drawn = []
    jinit.flax.builder(lambda: Net(nnx.Rngs(0)))(existing=state, progress=drawn.append)
    assert sorted(p.path for p in drawn) == ["head/bias", "head/kernel"]
    with pytest.raises(ValueError, match=r"Parameter 'head/bias': `existing` has shape \(10,\), the parameter \(3,\)"):
        jinit.flax.build(lambda: Net(nnx.Rngs(0), classes=3), existing=checkpoint)


# ------------------------------------------------------------------------------------------------ Haiku, Equinox


def test_haiku_init_with_state():
    hk = pytest.importorskip("haiku")
    import jinit.haiku
    from jinit.haiku import to_haiku

    def forward(x):
        h = hk.nets.MLP([8, 4], w_init=to_haiku(jinit.he_uniform()))(x)
        return hk.BatchNorm(True, True, 0.9)(h, is_training=True)

    f = hk.transform_with_state(forward)
    x = jnp.ones((3, 5))
    params, state = jinit.haiku.init(f, KEY, x)  # the state's EMA is computed from the forward pass
    old, _ = f.init(jax.random.key(1), x)
    given = {k: v for k, v in old.items() if k != "mlp/~/linear_1"}
    out = jinit.haiku.init(f, KEY, x, existing=(given, None))
    assert_bitwise(out, (overlay(params, given), state))
    assert out[0]["mlp/~/linear_0"]["w"] is given["mlp/~/linear_0"]["w"]


def test_equinox_build_with_none_leaves_or_a_dict():
    pytest.importorskip("equinox")
    import equinox as eqx

    import jinit.equinox

    class Linear(eqx.Module):
        weight: jax.Array
        bias: jax.Array

        def __init__(self, key):
            self.weight = jinit.he_normal()(key, (4, 4))
            self.bias = jinit.zeros(None, (4,))

    class Deep(eqx.Module):
        first: Linear
        layers: Linear
        other: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.first = Linear(k1)
            self.layers = eqx.filter_vmap(Linear)(jax.random.split(k2, 3))
            self.other = eqx.nn.Linear(4, 4, key=k3)  # Equinox's own draw: computed by the program

    reference = eqx.filter(Deep(KEY), eqx.is_array)
    checkpoint = eqx.filter(Deep(jax.random.key(1)), eqx.is_array)
    existing = eqx.tree_at(lambda m: (m.layers.weight, m.other.bias), checkpoint, replace=(None, None))
    built = jinit.equinox.build(Deep, KEY, existing=existing)
    assert_bitwise(eqx.filter(built, eqx.is_array), overlay(reference, existing))
    assert built.first.weight is checkpoint.first.weight
    built = jinit.equinox.build(Deep, KEY, existing={"first": {"weight": checkpoint.first.weight}})
    np.testing.assert_array_equal(built.other.weight, reference.other.weight)


def test_linen_a_long_program_is_pruned_and_evaluated_op_by_op_as_before():
    pytest.importorskip("flax")
    import flax.linen as nn

    import jinit.flax
    from jinit._src import program

    class Deep(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(12):  # initializers the engine does not draw: the program computes them, op by op
                x = nn.LayerNorm()(nn.Dense(8, kernel_init=nn.initializers.orthogonal())(x))
            return nn.Dense(3, kernel_init=jinit.he_normal(), name="head")(x)

    model, x = Deep(), jnp.ones((2, 8))
    full = model.init(KEY, x)
    old = model.init(jax.random.key(1), x)
    params = {k: v for i, (k, v) in enumerate(sorted(old["params"].items())) if i % 3 and k != "head"}
    init = jinit.flax.initializer(model)
    out = init(KEY, x, existing={"params": params})
    assert_bitwise(out, overlay(full, {"params": params}))
    plan = init.planned.plan((KEY, x), {})
    [pruned] = plan.partial.values()
    assert len(plan.found.jaxpr.eqns) > program.WHOLE
    assert len(pruned.found.jaxpr.eqns) < len(plan.found.jaxpr.eqns)
