"""Whole-model initialization on one device: path keys, init_tree, init_like, compile counts and memory.

The 8-device sharding tests are in tests/sharded (a separate process: see test_sharded.py).
"""

import collections
import dataclasses
import hashlib
import math
import pickle
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit._src import distributions, engine

from cases import CASES, ids

KEY = jax.random.key(0)


def independent_path_key(key, path):
    """path_key written from its specification: BLAKE2b-64 of the UTF-8 path, folded in as two big-endian words."""
    digest = hashlib.blake2b(path.encode(), digest_size=8).hexdigest()
    return jax.random.fold_in(jax.random.fold_in(key, int(digest[:8], 16)), int(digest[8:], 16))


def key_bits(key):
    return np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)


@pytest.mark.parametrize("path", ["h0/attn/kernel", "", "blocks/3/mlp/0", "ünï/cödé"])
@pytest.mark.parametrize("key", [jax.random.key(7), jax.random.PRNGKey(7)], ids=["typed", "legacy"])
def test_path_key_is_the_hash_of_the_path_folded_in(key, path):
    np.testing.assert_array_equal(key_bits(jinit.path_key(key, path)), key_bits(independent_path_key(key, path)))
    jitted = jax.jit(jinit.path_key, static_argnums=1)(key, path)
    np.testing.assert_array_equal(key_bits(jitted), key_bits(independent_path_key(key, path)))


def test_path_keys_differ_by_path_and_by_root():
    paths = [f"h{i}/{name}" for i in range(50) for name in ("kernel", "bias")] + ["h0/kernel/", "H0/kernel"]
    keys = {tuple(key_bits(jinit.path_key(KEY, p))) for p in paths}
    assert len(keys) == len(paths)
    assert not np.array_equal(key_bits(jinit.path_key(jax.random.key(1), "a")), key_bits(jinit.path_key(KEY, "a")))


@dataclasses.dataclass
class Block:
    kernel: jinit.ParamSpec
    bias: jinit.ParamSpec


jax.tree_util.register_dataclass(Block, data_fields=["kernel", "bias"], meta_fields=[])


def model(layers, width=6):
    """A small model tree: dicts, a list, a tuple, a registered dataclass and a None."""
    return {
        "embed": jinit.ParamSpec((11, width), jinit.normal(0.02)),
        "blocks": [
            {"dense": Block(jinit.ParamSpec((width, width), jinit.glorot_uniform()),
                            jinit.ParamSpec((width,), jinit.zeros)),
             "norm": (jinit.ParamSpec((width,), jinit.ones), None)}
            for _ in range(layers)
        ],
    }  # fmt: skip


def paths_and_specs(specs):
    flat, _ = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, jinit.ParamSpec))
    return [(jax.tree_util.keystr(p, simple=True, separator="/"), s) for p, s in flat]


def assert_each_leaf_is_its_own_call(specs, params, call=lambda init, key, shape, dtype: init(key, shape, dtype)):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    flat_params = {jax.tree_util.keystr(p, simple=True, separator="/"): x for p, x in leaves}
    expected = paths_and_specs(specs)
    assert sorted(flat_params) == sorted(path for path, _ in expected)
    mismatched = [
        path for path, spec in expected
        if not np.array_equal(flat_params[path], call(spec.init, jinit.path_key(KEY, path), spec.shape, spec.dtype))
    ]  # fmt: skip
    assert not mismatched


def test_init_tree_keeps_the_structure_and_each_leaf_is_its_own_call():
    specs = model(3)
    params = jinit.init_tree(KEY, specs)
    is_spec = lambda x: isinstance(x, jinit.ParamSpec)  # noqa: E731
    assert jax.tree.structure(params) == jax.tree.structure(jax.tree.map(lambda s: 0, specs, is_leaf=is_spec))
    assert isinstance(params["blocks"][2]["dense"], Block) and params["blocks"][1]["norm"][1] is None
    assert params["blocks"][0]["dense"].kernel.shape == (6, 6)
    assert_each_leaf_is_its_own_call(specs, params)
    paths = [path for path, _ in paths_and_specs(specs)]
    assert "blocks/2/dense/kernel" in paths and "blocks/1/norm/0" in paths


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_every_initializer_in_a_tree_is_its_own_call(case):
    specs = {case.id: [jinit.ParamSpec(shape, case.init) for shape in case.shapes]}
    assert_each_leaf_is_its_own_call(specs, jinit.init_tree(KEY, specs))


def test_dtypes_and_low_precision():
    specs = {"a": jinit.ParamSpec((300, 2), jinit.he_normal(), "bfloat16"),
             "b": jinit.ParamSpec((5, 7), jinit.truncated_normal(), "float16"),
             "c": jinit.ParamSpec((4,), jinit.constant(3), "int32")}  # fmt: skip
    params = jinit.init_tree(KEY, specs)
    assert [params[k].dtype for k in "abc"] == [jnp.bfloat16, jnp.float16, jnp.int32]
    assert_each_leaf_is_its_own_call(specs, params)


def test_a_large_group_is_drawn_by_its_shapes_kernel_with_each_parameters_own_values(monkeypatch):
    shape = (1031, 4099)  # 4.2 M elements: alone, drawn in pieces; four of them reach engine.WHOLE
    assert 4 * math.prod(shape) >= engine.WHOLE > 3 * math.prod(shape)
    specs = {
        "w": [jinit.ParamSpec(shape, jinit.normal(0.02)) for _ in range(4)],  # one group, drawn per shape
        "u": [jinit.ParamSpec(shape, jinit.he_uniform(), "bfloat16") for _ in range(3)],  # too small in all
        "o": jinit.ParamSpec((3, 5), jinit.orthogonal()),
    }
    draws, draw = [], engine.draw

    def spy(law, key, *args, **kwargs):
        if not isinstance(key, jax.core.Tracer):  # not the checks' tracing
            draws.append(kwargs.get("per_shape", False))
        return draw(law, key, *args, **kwargs)

    monkeypatch.setattr(engine, "draw", spy)
    params = jinit.init_tree(KEY, specs)
    assert draws == [False] * 3 + [True] * 4  # "u" before "w"
    monkeypatch.undo()
    assert_each_leaf_is_its_own_call(specs, params)
    np.testing.assert_array_equal(params["w"][2], jax.nn.initializers.normal(0.02)(jinit.path_key(KEY, "w/2"), shape))


def test_values_do_not_depend_on_other_parameters_or_their_order():
    small, large = jinit.init_tree(KEY, model(2)), jinit.init_tree(KEY, model(5))
    for i in range(2):
        np.testing.assert_array_equal(small["blocks"][i]["dense"].kernel, large["blocks"][i]["dense"].kernel)
    a = {"x": jinit.ParamSpec((4, 4), jinit.he_uniform()), "y": jinit.ParamSpec((3,), jinit.normal())}
    b = {"z": jinit.ParamSpec((2, 2), jinit.orthogonal()), "y": jinit.ParamSpec((3,), jinit.normal())}
    np.testing.assert_array_equal(jinit.init_tree(KEY, a)["y"], jinit.init_tree(KEY, b)["y"])
    assert not np.array_equal(jinit.init_tree(KEY, a)["y"], jinit.init_tree(jax.random.key(1), a)["y"])


def test_foreign_initializers_and_legacy_keys():
    specs = {"w": jinit.ParamSpec((5, 3), jax.nn.initializers.lecun_normal())}
    legacy = jax.random.PRNGKey(3)
    params = jinit.init_tree(legacy, specs)
    expected = jax.nn.initializers.lecun_normal()(independent_path_key(legacy, "w"), (5, 3))
    np.testing.assert_array_equal(params["w"], expected)


def test_empty_trees():
    assert jinit.init_tree(KEY, {}) == {}
    assert jinit.init_tree(KEY, {"a": [], "b": None}) == {"a": [], "b": None}


def compiles(monkeypatch):
    """Counts XLA compilations: replaces the backend compile that every jit goes through with a counting one."""
    from jax._src import compiler

    count = [0]
    compile_or_get_cached = compiler.compile_or_get_cached

    def counting(*args, **kwargs):
        count[0] += 1
        return compile_or_get_cached(*args, **kwargs)

    monkeypatch.setattr(compiler, "compile_or_get_cached", counting)
    return count


def test_compilations_grow_with_groups_not_layers(monkeypatch):
    jinit.init_tree(KEY, model(1, 3))  # what a process compiles once (its checks, the keys of 6 paths)
    count = compiles(monkeypatch)
    width = 13  # shapes used by no other test
    jinit.init_tree(KEY, model(1, width))
    first = count[0]
    jinit.init_tree(KEY, model(12, width))
    assert first <= 5  # at most one kernel per group (the kernels of one size serve many shapes)
    # 12 layers: at most the key derivation of 61 paths (padded to 64) compiles again, unless an earlier test in
    # this process compiled it already
    assert count[0] <= first + 1


def test_zeros_and_ones_of_new_shapes_compile_nothing(monkeypatch):
    shapes = [(17, 3), (23,), (2, 0, 5), ()]  # shapes used by no other test
    dtypes = ["float32", "bfloat16", "int8", "complex64"]
    specs = {f"{name}{i}": jinit.ParamSpec(shape, init, dtype)
             for name, init in (("z", jinit.zeros), ("o", jinit.ones))
             for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True))}  # fmt: skip
    jinit.init_tree(KEY, {"warm": jinit.ParamSpec((4,), jinit.zeros)})  # the process's checks
    count = compiles(monkeypatch)
    params = jinit.init_tree(KEY, specs)
    assert count[0] <= 1  # the keys of the paths, at most; no kernel per shape
    for path, spec in specs.items():
        theirs = (jnp.zeros if spec.init is jinit.zeros else jnp.ones)(spec.shape, spec.dtype)
        ours = params[path]
        assert (ours.dtype, ours.shape, ours.weak_type, ours.committed) == (
            theirs.dtype, theirs.shape, theirs.weak_type, theirs.committed,
        )  # fmt: skip
        assert np.array_equal(ours, theirs)


def test_under_jit_the_program_grows_with_groups_not_layers():
    def operations(layers):
        """The number of each operation in the lowered program (its shapes aside)."""
        text = jax.jit(lambda key: jinit.init_tree(key, model(layers, 9))).lower(KEY).as_text()
        return collections.Counter(re.findall(r"= (stablehlo\.[a-z_]+|call)", text))

    two, ten = operations(2), operations(10)
    assert two["stablehlo.while"] >= 3 and two["stablehlo.xor"] >= 10  # a loop per group, threefry's rounds
    for per_leaf in ("stablehlo.slice", "stablehlo.reshape"):  # each leaf taken out of its group's stacked result
        del two[per_leaf], ten[per_leaf]
    assert two == ten


def test_under_jit_each_leaf_is_its_own_call_under_jit():
    specs = model(3)
    params = jax.jit(lambda key: jinit.init_tree(key, specs))(KEY)
    jit_call = jax.jit(lambda init, key, shape, dtype: init(key, shape, dtype), static_argnums=(0, 2, 3))
    assert_each_leaf_is_its_own_call(specs, params, jit_call)
    # a tree of specs is static: init_tree itself can be jitted
    again = jax.jit(jinit.init_tree)(KEY, specs)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params, again))


def test_eval_shape_allocates_nothing():
    specs = model(2)
    jax.eval_shape(jinit.init_tree, KEY, specs)  # (the process's checks at first use keep what they computed)
    before = jax.live_arrays()  # (held, so that no earlier test's array is collected meanwhile)
    shapes = jax.eval_shape(jinit.init_tree, KEY, specs)
    assert len(jax.live_arrays()) == len(before)
    assert shapes["blocks"][1]["dense"].kernel == jax.ShapeDtypeStruct((6, 6), jnp.float32)
    assert shapes["embed"].shape == (11, 6)


def test_param_spec_is_a_value():
    a = jinit.ParamSpec([3, 4], jinit.glorot_uniform(), "float32")
    b = jinit.ParamSpec((3, 4), jinit.glorot_uniform(), jnp.float32)
    assert a == b and hash(a) == hash(b) and a != jinit.ParamSpec((3, 4), jinit.glorot_normal(), "float32")
    assert pickle.loads(pickle.dumps(a)) == a
    assert "ParamSpec(shape=(3, 4)" in repr(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.shape = (1,)  # type: ignore[misc]
    assert jax.tree.leaves({"a": a}) == []  # a pytree without leaves: static under jit


SPEC_ERRORS = [
    (lambda: jinit.ParamSpec((2, -1), jinit.zeros), ValueError, r"`shape`.*-1"),
    (lambda: jinit.ParamSpec((2, 2), "glorot_uniform"), TypeError, r"`init`.*Received: init='glorot_uniform'"),
    (lambda: jinit.ParamSpec((2, 2), jinit.zeros, "string"), TypeError, r"`dtype`.*string"),
    (lambda: jinit.ParamSpec((2, 2), jinit.zeros, sharding=("x",)), TypeError, r"`sharding`.*\('x',\)"),
]


@pytest.mark.parametrize("build, error, message", SPEC_ERRORS)
def test_param_spec_rejects(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_init_tree_rejects_before_allocating(no_arrays):
    spec = jinit.ParamSpec((2, 2), jinit.normal())
    with pytest.raises(TypeError, match=r"`specs`.*'a/1'.*Received: a/1=3"):
        jinit.init_tree(KEY, {"a": [spec, 3]})
    with pytest.raises(ValueError, match=r"path 'a/b'.*Received: specs\['a'\]\['b'\] and specs\['a/b'\]"):
        jinit.init_tree(KEY, {"a": {"b": spec}, "a/b": spec})
    with pytest.raises(ValueError, match=r"'w'.*PartitionSpec.*no mesh.*Received: sharding=(P|PartitionSpec)\('x',\)"):
        jinit.init_tree(KEY, {"w": jinit.ParamSpec((2, 2), jinit.normal(), sharding=jax.P("x"))})
    with pytest.raises(TypeError, match=r"`mesh`.*Received: mesh='x'"):
        jinit.init_tree(KEY, {"w": spec}, mesh="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`key`.*Received: key=0"):
        jinit.init_tree(0, {"w": spec})
    with pytest.raises(TypeError, match=r"`path`.*Received: path=3"):
        jinit.path_key(KEY, 3)  # type: ignore[arg-type]


ABSTRACT = {
    "dense": {"kernel": jax.ShapeDtypeStruct((3, 4), jnp.float32), "bias": jax.ShapeDtypeStruct((4,), jnp.float32)},
    "embed": {"embedding": jax.ShapeDtypeStruct((10, 4), jnp.bfloat16)},
}


def test_init_like_matches_rules_in_order():
    rules = [(r"dense/kernel", jinit.he_normal()), (r".*bias", jinit.ones), (re.compile(r".*"), jinit.normal(0.5))]
    params = jinit.init_like(KEY, ABSTRACT, rules)
    expected = jinit.init_tree(KEY, {
        "dense": {"kernel": jinit.ParamSpec((3, 4), jinit.he_normal(), "float32"),
                  "bias": jinit.ParamSpec((4,), jinit.ones, "float32")},
        "embed": {"embedding": jinit.ParamSpec((10, 4), jinit.normal(0.5), "bfloat16")},
    })  # fmt: skip
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    assert jax.tree.all(jax.tree.map(lambda a, b: a.dtype == b.dtype and bool((a == b).all()), params, expected))
    # arrays work as well as ShapeDtypeStructs, and a full match is needed: "kernel" alone matches nothing
    again = jinit.init_like(KEY, params, rules)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), again, expected))
    with pytest.raises(ValueError, match=r"2 parameter path\(s\): 'dense/kernel', 'embed/embedding'"):
        jinit.init_like(KEY, ABSTRACT, [("kernel", jinit.zeros), (".*bias", jinit.zeros)])


def test_init_like_works_with_eval_shape_of_a_model():
    def model_init(key):
        return {"w": jax.random.normal(key, (5, 3)), "b": jnp.zeros((3,), jnp.float16)}

    abstract = jax.eval_shape(model_init, KEY)
    params = jinit.init_like(KEY, abstract, [("w", jinit.glorot_uniform()), ("b", jinit.zeros)])
    assert params["w"].shape == (5, 3) and params["b"].dtype == jnp.float16


INIT_LIKE_ERRORS = [
    (ABSTRACT, "kernel", TypeError, r"`rules`.*\(regex, initializer\) pairs.*Received: rules='kernel'"),
    (ABSTRACT, [("(", jinit.zeros)], ValueError, r"Rule 0 of `rules` is not a valid regex.*Received: regex='\('"),
    (ABSTRACT, [(".*", "zeros")], TypeError, r"`rules\[0\]`.*Received: rules\[0\]='zeros'"),
    (ABSTRACT, [(".*", jinit.zeros, 1)], TypeError, r"rule 0 is not"),
    ({"a": 3}, [(".*", jinit.zeros)], TypeError, r"`abstract_tree`.*'a'.*Received: a=3"),
    (ABSTRACT, [], ValueError, r"No rule of `rules` matches 3 parameter path"),
]


@pytest.mark.parametrize("tree, rules, error, message", INIT_LIKE_ERRORS)
def test_init_like_rejects_before_allocating(tree, rules, error, message, no_arrays):
    with pytest.raises(error, match=message):
        jinit.init_like(KEY, tree, rules)


def test_exact_kernels_keep_temporaries_small():
    """A parameter is generated in place: on CPU its program has no temporary array at all (one fused loop),
    and the loop that other platforms run keeps only a few pieces."""
    laws = [distributions.Normal(0.02), distributions.ScaledTruncatedNormal(0.1), distributions.ScaledUniform(0.3)]
    f32 = jnp.dtype("float32")
    looped = jax.jit(engine.looped, static_argnames=("n", "dtype"))
    data = jax.random.key_data(KEY)
    for law in laws:
        shape = (8192, 4096)  # 128 MiB: drawn whole by JAX, the temporaries are three times that
        exact = engine._exact.lower(KEY, law, shape=shape, dtype=f32, sharding=None, positioned=True).compile()
        assert exact.memory_analysis().temp_size_in_bytes <= 2**16, law
        compiled = looped.lower(law, data, n=math.prod(shape), dtype=f32).compile()
        assert compiled.memory_analysis().temp_size_in_bytes <= 8 * engine.LOOP_CHUNK * 4, law


def test_the_loop_of_other_platforms_gives_the_stream_values():
    n = 3 * engine.LOOP_CHUNK + 4115  # three pieces and an overlapping last one
    law = distributions.Normal(0.02)
    looped = jax.jit(engine.looped, static_argnames=("n", "dtype"))(
        law, jax.random.key_data(KEY), n=n, dtype=jnp.dtype("float32")
    )
    np.testing.assert_array_equal(looped, jax.nn.initializers.normal(0.02)(KEY, (n,)))


def test_a_bad_parameter_fails_before_any_is_generated():
    specs = {"a": jinit.ParamSpec((300, 40), jinit.normal()), "z": jinit.ParamSpec((5,), jinit.orthogonal())}
    before = jax.live_arrays()  # (held: see test_eval_shape_allocates_nothing)
    with pytest.raises(ValueError, match=r"`orthogonal` needs a shape of rank >= 2"):
        jinit.init_tree(KEY, specs)
    assert len(jax.live_arrays()) == len(before)

    def wrong_shape(key, shape, dtype=None):
        return jnp.zeros((2,), dtype)

    with pytest.raises(ValueError, match=r"'w': its initializer returned shape \(2,\) instead.*shape=\(3, 3\)"):
        jinit.init_tree(KEY, {"w": jinit.ParamSpec((3, 3), wrong_shape)})


def test_default_dtype_follows_x64():
    specs = {"w": jinit.ParamSpec((300, 2), jinit.he_uniform())}
    with jax.enable_x64(True):
        params = jinit.init_tree(KEY, specs)
        expected = jinit.he_uniform()(jinit.path_key(KEY, "w"), (300, 2))
    assert params["w"].dtype == jnp.float64
    np.testing.assert_array_equal(params["w"], expected)
