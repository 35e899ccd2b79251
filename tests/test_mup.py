"""muP (`jinit.mup`): kinds, learning-rate multipliers, initializers and output multiplier against Tables 3 and 8 of
Tensor Programs V, written out below as formulas of the widths; the base model unchanged at the base width; the
readout's variance at 4x the base width against scipy's chi-squared; the errors, before any array."""

import importlib.util
import math
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jinit

KEY = jax.random.key(5)
FAMILY_ALPHA = 1e-3  # the probability that any chi-squared test of this file rejects a correct implementation
IS_SPEC = {"is_leaf": lambda x: isinstance(x, jinit.ParamSpec)}
SETTINGS = [("adam", "multiplier"), ("adam", "init"), ("sgd", "multiplier"), ("sgd", "init")]


def leaves(tree):
    return jax.tree.leaves(tree, **IS_SPEC)


def factor(spec, inner):
    """The factor by which `mup` scaled `inner` in `spec` (1.0 when it left `inner` alone)."""
    if spec.init == inner:
        return 1.0
    assert spec.init.name == "scaled" and spec.init.init == inner, spec.init
    return spec.init.factor


# ------------------------------------------------------------------------------------------------------- an MLP

D_IN, CLASSES, B, W = 784, 10, 64, 256  # base width B, target width W
M = W / B  # every width multiplier of the MLP


def dense(n_in, n_out, init):
    return {"kernel": jinit.ParamSpec((n_in, n_out), init), "bias": jinit.ParamSpec((n_out,), jinit.zeros)}


def mlp(width):
    return {
        "in": dense(D_IN, width, jinit.glorot_uniform()),
        "hidden": dense(width, width, jinit.he_normal()),
        "out": dense(width, CLASSES, jinit.lecun_normal()),
    }


# Written from the paper's tables with fan_in, fan_out the target's over the base's: (kind, Adam LR, SGD LR) for
# Table 8 (readout="multiplier") and Table 3 (readout="init"), and the std factor that turns the target's own
# initializer into muP's variance (Glorot's 2 / (fan_in + fan_out) back to the base's, He's 2 / fan_in already
# 1 / fan_in of the base's, LeCun's 1 / fan_in of the readout to the base's (Table 8) or to 1 / fan_in**2 (Table 3)).
MLP_EXPECTED = {  # path: (kind, {readout: (Adam LR, SGD LR, std factor)})
    "in/kernel": ("input", {
        "multiplier": (1.0, W / B, math.sqrt((D_IN + W) / (D_IN + B))),
        "init": (1.0, W / B, math.sqrt((D_IN + W) / (D_IN + B))),
    }),
    "in/bias": ("input", {"multiplier": (1.0, W / B, 1.0), "init": (1.0, W / B, 1.0)}),
    "hidden/kernel": ("hidden", {  # SGD: fan_out / fan_in (MuSGD), Table 3's 1 as both fans grow alike
        "multiplier": (B / W, (W / B) / (W / B), 1.0),
        "init": (B / W, (W / B) / (W / B), 1.0),
    }),
    "hidden/bias": ("input", {"multiplier": (1.0, W / B, 1.0), "init": (1.0, W / B, 1.0)}),
    "out/kernel": ("output", {
        "multiplier": (1.0, W / B, math.sqrt(W / B)),  # variance 1 (the base's), LR fan_in, multiplier 1 / fan_in
        "init": (B / W, B / W, math.sqrt((B / W) ** 2 * (W / B))),  # variance 1 / fan_in**2, LR 1 / fan_in
    }),
    "out/bias": ("fixed", {"multiplier": (1.0, 1.0, 1.0), "init": (1.0, 1.0, 1.0)}),
}  # fmt: skip


def by_path(tree):
    return {
        jax.tree_util.keystr(keys, simple=True, separator="/"): x
        for keys, x in jax.tree.leaves_with_path(tree, **IS_SPEC)
    }


@pytest.mark.parametrize("optimizer, readout", SETTINGS)
def test_mlp_against_the_tables(optimizer, readout):
    result = jinit.mup(mlp(B), mlp(W), optimizer=optimizer, readout=readout)
    kinds, lrs, specs, target = (
        by_path(result.kinds),
        by_path(result.lr_multipliers),
        by_path(result.specs),
        by_path(mlp(W)),
    )
    assert set(kinds) == set(MLP_EXPECTED)
    for path, (kind, columns) in MLP_EXPECTED.items():
        adam, sgd, std = columns[readout]
        assert kinds[path] == kind, path
        assert lrs[path] == pytest.approx(adam if optimizer == "adam" else sgd, rel=1e-15), path
        assert type(lrs[path]) is float
        assert factor(specs[path], target[path].init) == pytest.approx(std, rel=1e-12), path
        assert specs[path].shape == target[path].shape and specs[path].dtype == target[path].dtype
    assert result.output_multiplier == (B / W if readout == "multiplier" else 1.0)


def test_the_variances_the_tables_ask_for():
    """The std factors above give the variances of the tables, relative to the base model's (the same initializers
    at the base width)."""
    result = by_path(jinit.mup(mlp(B), mlp(W)).specs)
    table3 = by_path(jinit.mup(mlp(B), mlp(W), readout="init").specs)
    # glorot_uniform's exact variance is 2 / (fan_in + fan_out): the input weights keep the base's
    assert factor(result["in/kernel"], jinit.glorot_uniform()) ** 2 * 2 / (D_IN + W) == pytest.approx(2 / (D_IN + B))
    # lecun_normal's is 1 / fan_in: the readout keeps the base's (Table 8), or gets 1 / fan_in**2 of it (Table 3)
    assert factor(result["out/kernel"], jinit.lecun_normal()) ** 2 / W == pytest.approx(1 / B)
    assert factor(table3["out/kernel"], jinit.lecun_normal()) ** 2 / W == pytest.approx(1 / B / M**2)
    # he_normal's 2 / fan_in is already 1 / fan_in of the base's: left alone
    assert result["hidden/kernel"].init == jinit.he_normal()


# --------------------------------------------------------------------------------------------- a transformer


def transformer(d, heads, layers=2, vocab=512, context=64):
    """GPT-2's initializers (normal(0.02), residual projections scaled by 1 / sqrt(2 * layers)), a fused QKV kernel,
    and einsum attention kernels (d, heads, head_dim) whose heads grow with the width."""
    std = jinit.normal(0.02)
    residual = jinit.scaled(std, 1 / math.sqrt(2 * layers))
    attention = jinit.lecun_normal(**jinit.einsum_axes("btd,dnh->btnh"))

    def norm():
        return {"scale": jinit.ParamSpec((d,), jinit.ones), "bias": jinit.ParamSpec((d,), jinit.zeros)}

    def block():
        return {
            "ln_1": norm(),
            "qkv": dense(d, 3 * d, jinit.packed(std, 3)),
            "query": jinit.ParamSpec((d, heads, 16), attention),
            "proj": jinit.ParamSpec((d, d), residual),
            "ln_2": norm(),
            "fc": jinit.ParamSpec((d, 4 * d), std),
            "fc_out": jinit.ParamSpec((4 * d, d), residual),
        }

    return {
        "wte": jinit.ParamSpec((vocab, d), std),
        "wpe": jinit.ParamSpec((context, d), jinit.normal(0.01)),
        "blocks": [block() for _ in range(layers)],
        "ln_f": norm(),
        "head": dense(d, vocab, std),
    }


D_BASE, D = 64, 512  # heads 4 -> 32 of 16 dimensions: the query kernel's fan-out grows as d does
MT = D / D_BASE


def transformer_expected(readout):
    """(kind, Adam LR, SGD LR, std factor) by path pattern, from the tables: constant-std initializers (normal(0.02))
    need the hidden weights' 1 / fan_in variance, 1 / sqrt(MT) in std; the readout keeps its std under Table 8
    and gets 1 / fan_in in std under Table 3; LeCun's query kernel is already 1 / fan_in."""
    hidden = ("hidden", 1 / MT, 1.0, 1 / math.sqrt(MT))
    vector = ("input", 1.0, MT, 1.0)
    head = ("output", 1.0, MT, 1.0) if readout == "multiplier" else ("output", 1 / MT, 1 / MT, 1 / MT)
    return {
        "wte": vector, "wpe": vector, "ln_f/scale": vector, "ln_f/bias": vector,
        "head/kernel": head, "head/bias": ("fixed", 1.0, 1.0, 1.0),
        "ln_1/scale": vector, "ln_1/bias": vector, "ln_2/scale": vector, "ln_2/bias": vector,
        "qkv/kernel": hidden, "qkv/bias": vector, "proj": hidden, "fc": hidden, "fc_out": hidden,
        "query": ("hidden", 1 / MT, 1.0, 1.0),
    }  # fmt: skip


@pytest.mark.parametrize("optimizer, readout", SETTINGS)
def test_transformer_against_the_tables(optimizer, readout):
    result = jinit.mup(transformer(D_BASE, 4), transformer(D, 32), optimizer=optimizer, readout=readout)
    expected = transformer_expected(readout)
    kinds, lrs, specs = by_path(result.kinds), by_path(result.lr_multipliers), by_path(result.specs)
    target = by_path(transformer(D, 32))
    assert len(kinds) == 2 * 10 + 6
    for path in kinds:
        kind, adam, sgd, std = expected[path.removeprefix("blocks/0/").removeprefix("blocks/1/")]
        assert kinds[path] == kind, path
        assert lrs[path] == pytest.approx(adam if optimizer == "adam" else sgd, rel=1e-15), path
        assert factor(specs[path], target[path].init) == pytest.approx(std, rel=1e-12), path
    assert result.output_multiplier == (1 / MT if readout == "multiplier" else 1.0)


def test_the_base_may_be_shapes():
    target = transformer(D, 32)
    expected = jinit.mup(transformer(D_BASE, 4), target)
    abstract = jax.eval_shape(jinit.init_tree, KEY, transformer(D_BASE, 4))  # jax.ShapeDtypeStruct leaves
    assert jinit.mup(abstract, target) == expected
    shapes = jax.tree.map(lambda spec: spec.shape, transformer(D_BASE, 4), **IS_SPEC)  # tuples of ints
    assert jinit.mup(shapes, target) == expected


@pytest.mark.parametrize("optimizer, readout", SETTINGS)
@pytest.mark.parametrize("model", [lambda: mlp(B), lambda: transformer(D_BASE, 4)], ids=["mlp", "transformer"])
def test_at_the_base_width_mup_is_the_base_model(model, optimizer, readout):
    target = model()
    result = jinit.mup(model(), target, optimizer=optimizer, readout=readout)
    assert result.specs == target
    assert all(got is spec for got, spec in zip(leaves(result.specs), leaves(target), strict=True))  # not scaled by 1
    assert set(leaves(result.lr_multipliers)) == {1.0}
    assert set(leaves(result.kinds)) == {"fixed"}
    assert result.output_multiplier == 1.0
    ours, theirs = jinit.init_tree(KEY, result.specs), jinit.init_tree(KEY, model())
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):  # so the same parameters
        np.testing.assert_array_equal(x, y)


def test_widths_that_round_leave_the_initializer_alone():
    # 1 / 384 over 1 / 96 is not exactly 96 / 384 in floats: the factor is 1 up to rounding, so none
    result = jinit.mup(
        {"w": jinit.ParamSpec((96, 96), jinit.lecun_normal())}, {"w": jinit.ParamSpec((384, 384), jinit.lecun_normal())}
    )
    assert result.specs["w"].init == jinit.lecun_normal()
    assert result.lr_multipliers["w"] == 96 / 384


def test_rectangular_hidden_weights_follow_musgd():
    # fan-in x4, fan-out x2: Adam 1 / fan_in, SGD fan_out / fan_in (Table 3's 1 when the two grow alike)
    base, target = (
        {"w": jinit.ParamSpec((64, 64), jinit.normal(0.02))},
        {"w": jinit.ParamSpec((256, 128), jinit.normal(0.02))},
    )
    assert jinit.mup(base, target).lr_multipliers["w"] == 1 / 4
    assert jinit.mup(base, target, optimizer="sgd").lr_multipliers["w"] == 2 / 4
    assert jinit.mup(base, target).specs["w"].init.factor == pytest.approx(math.sqrt(1 / 4))


def test_fan_axes_are_the_initializers():
    # PyTorch's (out, in) layout: the readout's fan-in is axis 1
    init = jinit.torch_kaiming_normal()
    result = jinit.mup({"out": jinit.ParamSpec((10, 64), init)}, {"out": jinit.ParamSpec((10, 256), init)})
    assert result.kinds == {"out": "output"} and result.output_multiplier == 64 / 256
    # Keras's input_axes / output_axes, and an initializer held by `scaled`
    keras = jinit.scaled(jinit.keras_variance_scaling(1.0, "fan_in", "normal", (0,), (1, 2)), 0.5)
    result = jinit.mup({"q": jinit.ParamSpec((64, 4, 8), keras)}, {"q": jinit.ParamSpec((256, 16, 8), keras)})
    assert result.kinds == {"q": "hidden"} and result.lr_multipliers == {"q": 1 / 4}


# ------------------------------------------------------------------------------------------ overrides and values


def test_overrides_set_the_kind_first_match_wins():
    overrides = {r"out/kernel": "hidden", r".*/kernel": "fixed", r"in/.*": "output"}
    result = jinit.mup(mlp(B), mlp(W), overrides=overrides)
    kinds = by_path(result.kinds)
    assert kinds["out/kernel"] == "hidden" and kinds["hidden/kernel"] == "fixed" and kinds["in/kernel"] == "fixed"
    assert kinds["in/bias"] == "output" and kinds["hidden/bias"] == "input"  # fullmatch: "in/.*" is not "hidden/.."
    # fixed: left as the target has it, whatever the shapes
    assert result.specs["hidden"]["kernel"] == mlp(W)["hidden"]["kernel"]
    assert result.lr_multipliers["hidden"]["kernel"] == 1.0
    # the readout as hidden: Adam 1 / fan_in, no output multiplier
    assert result.lr_multipliers["out"]["kernel"] == B / W and result.output_multiplier == 1.0


def test_seeded_initializers_keep_their_seed():
    init = jinit.normal(0.02).with_seed(3)
    result = jinit.mup({"w": jinit.ParamSpec((64, 64), init)}, {"w": jinit.ParamSpec((256, 256), init)})
    assert result.specs["w"].init == jinit.scaled(jinit.normal(0.02), 0.5).with_seed(3)


def test_constant_initializers_are_left_alone():
    for init in (jinit.zeros, jinit.ones, jinit.identity(), jinit.constant(0.5)):
        result = jinit.mup({"w": jinit.ParamSpec((64, 64), init)}, {"w": jinit.ParamSpec((256, 256), init)})
        assert result.specs["w"].init is init and result.kinds["w"] == "hidden"


def test_the_result_is_usable():
    result = jinit.mup(mlp(B), mlp(W))
    params = jinit.init_tree(KEY, result.specs)
    updates = jax.tree.map(jnp.ones_like, params)
    scaled = jax.tree.map(lambda u, m: u * m, updates, result.lr_multipliers)  # the same structure
    assert float(scaled["hidden"]["kernel"][0, 0]) == B / W and float(scaled["in"]["kernel"][0, 0]) == 1.0
    # the specs are values: they compare, pickle and serialize
    assert pickle.loads(pickle.dumps(result)) == result
    out = result.specs["out"]["kernel"].init
    assert jinit.deserialize(jinit.serialize(out)) == out
    assert isinstance(result, jinit.MuP) and result._fields == ("specs", "lr_multipliers", "output_multiplier", "kinds")


# ------------------------------------------------------------------------------------------------ statistics

# Each test checks a sample variance against the exact distribution of (n - 1) s^2 / sigma^2, chi-squared with
# n - 1 degrees of freedom for n independent normal samples, two-sided at ALPHA (Bonferroni over the tests).
VARIANCES = [  # (readout, path, the variance the tables ask for, relative to the base model's)
    ("multiplier", "out", 1.0 / 128),  # Table 8: the readout keeps the base's variance 1 / fan_in_base
    ("init", "out", 1.0 / 128 / 4**2),  # Table 3: 1 / fan_in**2, relative to the base
    ("multiplier", "hidden", 0.02**2 / 4),  # normal(0.02): the hidden weights' 1 / fan_in
]
ALPHA = FAMILY_ALPHA / len(VARIANCES)


def stat_mlp(width):  # normal, untruncated distributions, whose sample variances are chi-squared
    return {
        "hidden": jinit.ParamSpec((width, width), jinit.normal(0.02)),
        "out": jinit.ParamSpec((width, 64), jinit.variance_scaling(1.0, "fan_in", "normal")),
    }


def chi2_interval(variance, n):
    """The sample variances (ddof=1) that the test accepts for n normal samples of `variance`."""
    low, high = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n - 1)
    return variance * low / (n - 1), variance * high / (n - 1)


@pytest.mark.parametrize("readout, path, variance", VARIANCES)
def test_variance_at_four_times_the_base_width(readout, path, variance):
    result = jinit.mup(stat_mlp(128), stat_mlp(512), readout=readout)
    x = np.asarray(jinit.init_tree(KEY, result.specs)[path], np.float64).ravel()
    low, high = chi2_interval(variance, x.size)
    assert low <= x.var(ddof=1) <= high, (x.var(ddof=1), low, high)
    # the test can fail: it tells the variance from 10% more or less, and from SP's (the width's own 1 / fan_in)
    assert high < 1.1 * variance and low > 0.9 * variance
    sp = np.asarray(jinit.init_tree(KEY, stat_mlp(512))[path], np.float64).var(ddof=1)
    assert not low <= sp <= high


# ------------------------------------------------------------------------------------------------ the example


def test_the_coordinate_checks_assertion_can_fail():
    """The example's check on made-up scales: flat under both parametrizations fails (SP must grow), growing
    under both fails (muP must not); the example itself runs in test_examples.py."""
    path = Path(__file__).parent.parent / "examples" / "mup_coordinate_check.py"
    spec = importlib.util.spec_from_file_location("mup_coordinate_check", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    steps, widths, names = example.STEPS, example.WIDTHS, tuple(example.CHECKED)

    def made_up(growth):  # scale proportional to width**growth, at every step, for every activation
        grid = np.array([(w / example.BASE) ** growth for w in widths], np.float64)
        scales = np.broadcast_to(grid[:, None, None], (len(widths), steps + 1, len(names))).copy()
        return jinit.CoordCheck(widths, names, scales, np.zeros((len(widths), steps + 1)))

    def both(sp, mup):
        return {"SP": made_up(sp), "muP": made_up(mup)}

    assert example.check(both(sp=1.0, mup=0.0))[1] == []  # SP x16, muP flat: passes
    assert len(example.check(both(sp=0.0, mup=0.0))[1]) == 2  # SP flat: fails for both columns
    assert len(example.check(both(sp=1.0, mup=0.5))[1]) == 2  # muP x4: fails for both columns


# ------------------------------------------------------------------------------------------------------ errors


def spec(shape, init=None):
    return jinit.ParamSpec(shape, init or jinit.lecun_normal())


def pair(base_shape, shape, init=None):
    """`base` and `target` of one parameter 'a'."""
    init = init or jinit.lecun_normal()
    return {"a": jinit.ParamSpec(base_shape, init)}, {"a": jinit.ParamSpec(shape, init)}


def two_outputs():
    return {"a": spec((8, 3)), "b": spec((4, 3))}, {"a": spec((16, 3)), "b": spec((16, 3))}


ERRORS = [  # (id, (base, target), keyword arguments, error, message)
    ("structure", ({"a": spec((4, 4))}, {"b": spec((8, 8))}), {}, ValueError, r"`base` must have the structure of"),
    ("rank", pair((4, 4), (8, 8, 8)), {}, ValueError, r"'a' has a different rank.*shape=\(4, 4\), shape=\(8, 8, 8\)"),
    ("shrinks", pair((8, 8), (4, 16)), {}, ValueError, r"'a': an axis of `target` is smaller.*swapped"),
    ("from zero", pair((0, 8), (4, 8)), {}, ValueError, r"'a': .*grows from 0"),
    ("receptive field", pair((3, 3, 8, 8), (5, 5, 16, 16)), {}, ValueError, r"'a': its axis 0 changes, but it is"),
    ("batch axis", pair((4, 8, 8), (8, 16, 16), jinit.lecun_normal(batch_axis=0)), {}, ValueError, r"axis 0 changes"),
    ("axis", pair((4, 4), (8, 8), jinit.lecun_normal(in_axis=3)), {}, ValueError, r"'a': Argument `in_axis` is out"),
    ("orthogonal", pair((8, 8), (16, 16), jinit.orthogonal()), {}, ValueError, r"'a': muP must know.*orthogonal"),
    ("function", pair((8, 8), (16, 16), jax.nn.initializers.lecun_normal()), {}, TypeError, r"'a': .*`Initializer`"),
    ("two outputs", two_outputs(), {}, ValueError, r"different fan-in ratios.*readout='init'"),
    ("optimizer", ({}, {}), {"optimizer": "lion"}, ValueError, r"`optimizer` must be one of 'adam', 'sgd'. Received"),
    ("readout", ({}, {}), {"readout": "zero"}, ValueError, r"`readout` must be one of 'multiplier', 'init'. Received"),
    ("overrides type", ({}, {}), {"overrides": [("a", "hidden")]}, TypeError, r"`overrides` must be None or a dict"),
    ("overrides key", ({}, {}), {"overrides": {1: "hidden"}}, TypeError, r"`overrides` must have regexes"),
    ("overrides regex", ({}, {}), {"overrides": {"(": "hidden"}}, ValueError, r"not a valid regex.*regex='\('"),
    ("overrides kind", ({}, {}), {"overrides": {"a": "x"}}, ValueError, r"`overrides\['a'\]` must be one of 'input'"),
    ("overrides unmatched", pair((4, 4), (8, 8)), {"overrides": {"b": "fixed"}}, ValueError, r"match no .* path: 'b'"),
    (
        "target leaf",
        ({"a": (4, 4)}, {"a": jnp.zeros((8, 8))}),
        {},
        TypeError,
        r"`jinit.ParamSpec` leaves; the leaf at 'a'",
    ),
    ("base leaf", ({"a": "4x4"}, {"a": spec((8, 8))}), {}, TypeError, r"`base` must have a shape .* at 'a'"),
]


@pytest.mark.parametrize("trees, kwargs, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_before_any_array(trees, kwargs, error, match, no_arrays):
    with pytest.raises(error, match=match):
        jinit.mup(*trees, **kwargs)


def test_mup_allocates_no_array(no_arrays):
    assert jinit.mup(transformer(D_BASE, 4), transformer(D, 32)).output_multiplier == 1 / MT
