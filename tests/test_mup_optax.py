"""muP in optax (`mup_scale`, `mu_adam`, `mu_adamw`, `mu_sgd`) against two independent references: Adam, AdamW and
SGD written out in NumPy (float64) with microsoft/mup's per-group learning rates and weight decays (``MuAdam``,
``MuAdamW``, ``MuSGD``: ``lr * m`` and ``weight_decay / m``), and PyTorch's own optimizers given those groups;
Depth-muP (`mup_depth`); the coordinate check (`coord_check`): flat in the width under muP, growing under the
standard parametrization."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit

optax = pytest.importorskip("optax", reason="optax is an optional extra: pip install 'jinit[optax]'")

KEY = jax.random.key(0)
B, W = 64, 256  # base and target widths
STEPS = 5


def dense(n_in, n_out, init):
    return {"kernel": jinit.ParamSpec((n_in, n_out), init), "bias": jinit.ParamSpec((n_out,), jinit.zeros)}


def mlp(width, inputs=32, classes=10):
    return {
        "in": dense(inputs, width, jinit.he_normal()),
        "hidden": dense(width, width, jinit.he_normal()),
        "out": dense(width, classes, jinit.lecun_normal()),
    }


# The multipliers of Tables 8 of Tensor Programs V (and MuAdam / MuSGD), written out: m = W / B for every fan.
M = W / B
MULTIPLIERS = {
    "adam": {"in": {"kernel": 1.0, "bias": 1.0}, "hidden": {"kernel": 1 / M, "bias": 1.0},
             "out": {"kernel": 1.0, "bias": 1.0}},
    "sgd": {"in": {"kernel": M, "bias": M}, "hidden": {"kernel": M / M, "bias": M},
            "out": {"kernel": M, "bias": 1.0}},
}  # fmt: skip


def result(optimizer):
    r = jinit.mup(mlp(B), mlp(W), optimizer=optimizer)
    assert r.lr_multipliers == MULTIPLIERS[optimizer]  # powers of two: exact
    return r


def gradients(params, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params) for _ in range(steps)]


def run(optimizer, params, grads):
    """The parameters after applying `optimizer` to each of `grads` in turn, under `jax.jit`."""
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, g):
        updates, state = optimizer.update(g, state, params)
        return optax.apply_updates(params, updates), state

    for g in grads:
        params, state = step(params, state, g)
    return params


# ----------------------------------------------------------------------------- the NumPy references (float64)


def numpy_adamw(p, grads, lr, m, wd=0.0, scale_wd=False, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch's AdamW for one parameter in MuAdamW's group: ``lr_g = lr * m``, ``wd_g = wd / m`` (or ``wd``)."""
    lr_g, wd_g = lr * m, wd if scale_wd else wd / m
    p, mu, nu = p.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        p = p * (1 - lr_g * wd_g)  # decoupled decay
        mu, nu = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g
        p = p - lr_g * (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
    return p


def numpy_sgd(p, grads, lr, m, momentum=None, nesterov=False, wd=0.0, scale_wd=False):
    """PyTorch's SGD for one parameter in MuSGD's group: L2 decay added to the gradient, then momentum."""
    lr_g, wd_g = lr * m, wd if scale_wd else wd / m
    p, buf = p.astype(np.float64), None
    for g in grads:
        d = g.astype(np.float64) + wd_g * p
        if momentum is not None:
            buf = d if buf is None else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        p = p - lr_g * d
    return p


def reference(update, params, grads, multipliers, **kwargs):
    leaves, treedef = jax.tree.flatten(params)
    per_leaf = [[jax.tree.leaves(g)[i] for g in grads] for i in range(len(leaves))]
    out = [
        update(np.asarray(p), gs, m=m, **kwargs)
        for p, gs, m in zip(leaves, per_leaf, jax.tree.leaves(multipliers), strict=True)
    ]
    return treedef.unflatten(out)


def assert_close(ours, expected, rtol=2e-5, atol=2e-6):
    for (path, x), y in zip(jax.tree.leaves_with_path(ours), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float64), y, rtol=rtol, atol=atol, err_msg=str(path))


ADAM_CASES = [  # (name, optimizer from the result, reference kwargs)
    ("mu_adam", lambda r: jinit.mu_adam(1e-2, r), {}),
    ("mu_adamw", lambda r: jinit.mu_adamw(1e-2, r, weight_decay=0.1), {"wd": 0.1}),
    ("mu_adamw_scaled_decay", lambda r: jinit.mu_adamw(1e-2, r, weight_decay=0.1, scale_weight_decay=True),
     {"wd": 0.1, "scale_wd": True}),
    ("chain_adam", lambda r: optax.chain(optax.adam(1e-2), jinit.mup_scale(r)), {}),
    ("chain_adamw", lambda r: optax.chain(optax.adamw(1e-2, weight_decay=0.1), jinit.mup_scale(r)),
     {"wd": 0.1, "scale_wd": True}),  # after adamw, the multiplier scales the decay too
]  # fmt: skip
SGD_CASES = [
    ("mu_sgd", lambda r: jinit.mu_sgd(0.05, r), {}),
    ("mu_sgd_momentum", lambda r: jinit.mu_sgd(0.05, r, momentum=0.9), {"momentum": 0.9}),
    ("mu_sgd_nesterov_decay", lambda r: jinit.mu_sgd(0.05, r, 0.9, True, weight_decay=0.01),
     {"momentum": 0.9, "nesterov": True, "wd": 0.01}),
    ("mu_sgd_scaled_decay", lambda r: jinit.mu_sgd(0.05, r, 0.9, weight_decay=0.01, scale_weight_decay=True),
     {"momentum": 0.9, "wd": 0.01, "scale_wd": True}),
    ("chain_sgd", lambda r: optax.chain(optax.sgd(0.05, 0.9), jinit.mup_scale(r)), {"momentum": 0.9}),
]  # fmt: skip


@pytest.mark.parametrize("name, build, kwargs", ADAM_CASES, ids=[c[0] for c in ADAM_CASES])
def test_adam_against_numpy(name, build, kwargs):
    r = result("adam")
    params = jinit.init_tree(KEY, r.specs)
    grads = gradients(params)
    expected = reference(numpy_adamw, params, grads, r.lr_multipliers, lr=1e-2, **kwargs)
    assert_close(run(build(r), params, grads), expected)


@pytest.mark.parametrize("name, build, kwargs", SGD_CASES, ids=[c[0] for c in SGD_CASES])
def test_sgd_against_numpy(name, build, kwargs):
    r = result("sgd")
    params = jinit.init_tree(KEY, r.specs)
    grads = gradients(params)
    expected = reference(numpy_sgd, params, grads, r.lr_multipliers, lr=0.05, **kwargs)
    assert_close(run(build(r), params, grads), expected)


def test_the_multipliers_change_the_steps():
    """The references above differ from plain Adam where the multiplier is not 1, so they can fail."""
    r = result("adam")
    params = jinit.init_tree(KEY, r.specs)
    grads = gradients(params)
    ours = run(jinit.mu_adamw(1e-2, r, weight_decay=0.1), params, grads)
    plain = run(optax.adamw(1e-2, weight_decay=0.1), params, grads)
    assert not np.allclose(ours["hidden"]["kernel"], plain["hidden"]["kernel"], rtol=1e-4)
    np.testing.assert_allclose(ours["in"]["kernel"], plain["in"]["kernel"], rtol=1e-6)  # multiplier 1
    scaled = run(jinit.mu_adamw(1e-2, r, weight_decay=0.1, scale_weight_decay=True), params, grads)
    assert not np.allclose(ours["hidden"]["kernel"], scaled["hidden"]["kernel"], rtol=1e-6)


# ------------------------------------------------------------------------------------ PyTorch's optimizers


@pytest.mark.parametrize("which", ["adamw", "sgd"])
def test_against_pytorch_with_mup_param_groups(which):
    """microsoft/mup's MuAdamW and MuSGD build PyTorch param groups with ``lr * m`` and ``weight_decay / m``."""
    torch = pytest.importorskip("torch")
    r = result("adam" if which == "adamw" else "sgd")
    params = jinit.init_tree(KEY, r.specs)
    grads = gradients(params)
    leaves = [torch.tensor(np.asarray(p, np.float64), requires_grad=True) for p in jax.tree.leaves(params)]
    lr, wd = (1e-2, 0.1) if which == "adamw" else (0.05, 0.01)
    groups = [
        {"params": [p], "lr": lr * m, "weight_decay": wd / m}
        for p, m in zip(leaves, jax.tree.leaves(r.lr_multipliers), strict=True)
    ]
    if which == "adamw":
        torch_optimizer, ours = torch.optim.AdamW(groups), jinit.mu_adamw(lr, r, weight_decay=wd)
    else:
        torch_optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True)
        ours = jinit.mu_sgd(lr, r, momentum=0.9, nesterov=True, weight_decay=wd)
    for g in grads:
        for p, gi in zip(leaves, jax.tree.leaves(g), strict=True):
            p.grad = torch.tensor(np.asarray(gi, np.float64))
        torch_optimizer.step()
    expected = jax.tree.unflatten(jax.tree.structure(params), [p.detach().numpy() for p in leaves])
    assert_close(run(ours, params, grads), expected)


# --------------------------------------------------------------------------------------------- mup_scale


def test_mup_scale_keeps_dtypes_takes_prefixes_and_masks():
    scale = jinit.mup_scale({"a": 0.5, "b": 2.0})
    updates = {"a": {"x": jnp.ones(2, jnp.bfloat16), "y": jnp.ones(3)}, "b": jnp.ones(2)}
    out, _ = scale.update(updates, scale.init(updates))
    assert out["a"]["x"].dtype == jnp.bfloat16 and (out["a"]["x"] == 0.5).all() and (out["a"]["y"] == 0.5).all()
    assert (out["b"] == 2.0).all()
    masked = optax.masked(jinit.mup_scale({"a": 0.5, "b": 2.0}), {"a": True, "b": False})
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    out, _ = masked.update(params, masked.init(params))
    assert (out["a"] == 0.5).all() and (out["b"] == 1.0).all()
    with_none = {"a": None, "b": jnp.ones(2)}
    assert scale.update(with_none, optax.EmptyState())[0]["a"] is None


def test_a_learning_rate_schedule_works():
    r = result("adam")
    params = jinit.init_tree(KEY, r.specs)
    grads = gradients(params, steps=3)
    schedule = optax.linear_schedule(1e-2, 1e-3, 3)
    ours = run(jinit.mu_adamw(schedule, r, weight_decay=0.1), params, grads)
    chained = optax.chain(optax.scale_by_adam(), jinit.mup_scale(r), optax.add_decayed_weights(0.1),
                          optax.scale_by_schedule(lambda t: -schedule(t)))  # fmt: skip
    assert_close(ours, jax.tree.map(np.asarray, run(chained, params, grads)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "value, error, match",
    [
        ({"w": -1.0}, ValueError, "the leaf at 'w' is not a positive finite number"),
        ({"w": 0.0}, ValueError, "the leaf at 'w'"),
        ({"w": math.inf}, ValueError, "the leaf at 'w'"),
        ({"w": "adam"}, TypeError, "the leaf at 'w'"),
    ],
)
def test_bad_multipliers_are_refused(value, error, match):
    with pytest.raises(error, match=match) as info:
        jinit.mup_scale(value)
    assert "Received: w=" in str(info.value)


def test_other_errors():
    scale = jinit.mup_scale({"w": 0.5})
    with pytest.raises(ValueError, match="must have the structure of `lr_multipliers`"):
        scale.init({"v": jnp.ones(2)})
    with pytest.raises(ValueError, match="`weight_decay` must be a non-negative number"):
        jinit.mu_adamw(1e-3, {"w": 0.5}, weight_decay=-0.1)
    with pytest.raises(TypeError, match="`scale_weight_decay` must be a boolean"):
        jinit.mu_sgd(1e-3, {"w": 0.5}, weight_decay=0.1, scale_weight_decay="yes")


def test_without_optax_an_import_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optax", None)
    with pytest.raises(ImportError, match=r"pip install 'jinit\[optax\]'"):
        jinit.mup_scale({"w": 1.0})


# --------------------------------------------------------------------------------------------- Depth-muP


def resnet(width, depth):
    blocks = [dense(width, width, jinit.he_normal()) for _ in range(depth)]
    return {"in": dense(8, width, jinit.he_normal()), "blocks": blocks, "out": dense(width, 1, jinit.lecun_normal())}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_mup_depth_scales_the_branches(optimizer):
    r = jinit.mup(resnet(32, 16), resnet(128, 16), optimizer=optimizer)
    deep = jinit.mup_depth(r, base_depth=4, depth=16, branches=r"blocks/\d+/.*", optimizer=optimizer)
    assert deep.branch_multiplier == 0.5  # sqrt(4 / 16)
    factor = 0.5 if optimizer == "adam" else 1.0  # TP VI: Adam's learning rate / sqrt(L), SGD's unchanged
    for block, base in zip(deep.lr_multipliers["blocks"], r.lr_multipliers["blocks"], strict=True):
        assert block == {k: v * factor for k, v in base.items()}
    assert deep.lr_multipliers["in"] == r.lr_multipliers["in"] and deep.lr_multipliers["out"] == r.lr_multipliers["out"]
    assert (deep.specs, deep.kinds, deep.output_multiplier) == (r.specs, r.kinds, r.output_multiplier)
    at_base = jinit.mup_depth(r, base_depth=16, depth=16, branches=[r"blocks/.*"], optimizer=optimizer)
    assert at_base.branch_multiplier == 1.0 and at_base.lr_multipliers == r.lr_multipliers
    optimizer_ = jinit.mu_adam(1e-3, deep)  # a DepthMuP is taken as a MuP is
    params = jinit.init_tree(KEY, deep.specs)
    assert jax.tree.structure(optimizer_.update(params, optimizer_.init(params), params)[0]) == jax.tree.structure(
        params
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"result": {"w": 1.0}}, TypeError, "`result` must be the `jinit.MuP`"),
        ({"depth": 0}, ValueError, "`depth` must be a positive integer"),
        ({"base_depth": 2.0}, TypeError, "`base_depth` must be an integer"),
        ({"branches": "blocks/(\\d"}, ValueError, "invalid regex"),
        ({"branches": [r"blocks/.*", r"layers/.*"]}, ValueError, "match no parameter path: 'layers/.*'"),
        ({"branches": []}, TypeError, "non-empty sequence"),
        ({"optimizer": "lion"}, ValueError, "`optimizer` must be one of 'adam', 'sgd'"),
    ],
)
def test_mup_depth_errors(kwargs, error, match):
    arguments = {"result": jinit.mup(resnet(32, 4), resnet(64, 4)), "base_depth": 2, "depth": 4,
                 "branches": r"blocks/.*"} | kwargs  # fmt: skip
    with pytest.raises(error, match=match) as info:
        jinit.mup_depth(arguments.pop("result"), **arguments)
    assert "Received" in str(info.value)


# ------------------------------------------------------------------------------------------ the coordinate check

INPUTS, CLASSES, BATCH = 32, 10, 64
WIDTHS = (64, 128, 256, 512)
DATA_KEY, LABEL_KEY = jax.random.split(jax.random.key(1))
BATCH_DATA = (jax.random.normal(DATA_KEY, (BATCH, INPUTS)), jax.random.randint(LABEL_KEY, (BATCH,), 0, CLASSES))


def classifier(parametrization, learning_rate=3e-2):
    """The MLP of examples/mup_coordinate_check.py under SP (one Adam) or muP (`mu_adam`, base width 64)."""

    def model(width):
        if parametrization == "muP":
            r = jinit.mup(mlp(WIDTHS[0]), mlp(width))
            specs, multiplier, optimizer = r.specs, r.output_multiplier, jinit.mu_adam(learning_rate, r)
        else:
            specs, multiplier, optimizer = mlp(width), 1.0, optax.adam(learning_rate)

        def forward(params, batch):
            x, y = batch
            h = jax.nn.relu(x @ params["in"]["kernel"] + params["in"]["bias"][None])
            pre = h @ params["hidden"]["kernel"] + params["hidden"]["bias"][None]
            logits = jax.nn.relu(pre) @ params["out"]["kernel"] * multiplier + params["out"]["bias"][None]
            loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
            return loss, {"input": h, "hidden": pre, "logits": logits}

        return jinit.init_tree(KEY, specs), forward, optimizer

    return model


@pytest.fixture(scope="module")
def checks():
    return {name: jinit.coord_check(classifier(name), WIDTHS, BATCH_DATA, steps=3) for name in ("SP", "muP")}


def test_coord_check_records_what_a_hand_written_loop_measures(checks):
    check = checks["muP"]
    assert check.widths == WIDTHS and check.names == ("hidden", "input", "logits")
    assert check.scales.shape == (4, 4, 3) and check.losses.shape == (4, 4)
    params, forward, optimizer = classifier("muP")(128)
    state = optimizer.init(params)
    for t in range(4):
        loss, activations = forward(params, BATCH_DATA)
        expected = [float(jnp.mean(jnp.abs(activations[name]))) for name in check.names]
        np.testing.assert_allclose(check.scales[1, t], expected, rtol=1e-5)
        np.testing.assert_allclose(check.losses[1, t], float(loss), rtol=1e-5)
        grads = jax.grad(lambda p: forward(p, BATCH_DATA)[0])(params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)


def test_mup_keeps_the_activations_flat_and_sp_does_not(checks):
    """After each Adam step, SP's hidden pre-activations and logits grow with the width (each weight moves by
    about the learning rate, so a layer's output moves by about lr * fan_in: slope 1 in the limit; measured
    0.69 to 0.88 and 1.06 to 1.51 over widths 64 to 1024); muP's stay flat (measured |slope| < 0.05). The bounds
    are between the two, a factor of about 3 from each."""
    for step in (1, 2, 3):
        for name in ("hidden", "logits"):
            assert checks["SP"].slope(name, step) > 0.4, (name, step, checks["SP"].slope(name, step))
        for name in ("hidden", "logits", "input"):
            assert abs(checks["muP"].slope(name, step)) < 0.15, (name, step, checks["muP"].slope(name, step))
    # at initialization both are flat, except muP's logits, which its 1 / width output multiplier shrinks
    assert abs(checks["SP"].slope("hidden", 0)) < 0.15 and checks["muP"].slope("logits", 0) < -0.3


def test_coord_check_plots(checks, tmp_path):
    pytest.importorskip("matplotlib")
    figure = checks["muP"].plot(tmp_path / "coord.png", title="muP")
    assert (tmp_path / "coord.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figure.axes) == 3
    with pytest.raises(ValueError, match="one Axes per name"):
        checks["SP"].plot(axes=figure.axes[:2])


def test_coord_check_errors(checks):
    model = classifier("SP")
    with pytest.raises(ValueError, match="`widths` must be increasing"):
        jinit.coord_check(model, [128, 64], BATCH_DATA)
    with pytest.raises(TypeError, match="`widths` must be a non-empty sequence"):
        jinit.coord_check(model, [], BATCH_DATA)
    with pytest.raises(ValueError, match="`steps` must be a non-negative integer"):
        jinit.coord_check(model, [64], BATCH_DATA, steps=-1)
    with pytest.raises(TypeError, match="must return `\\(params, forward, optimizer\\)`"):
        jinit.coord_check(lambda width: model(width)[:2], [64], BATCH_DATA)
    with pytest.raises(TypeError, match="must return `\\(loss, activations\\)`"):
        jinit.coord_check(lambda width: (model(width)[0], lambda p, b: 0.0, optax.sgd(0.1)), [64], BATCH_DATA)
    with pytest.raises(ValueError, match="`name` must be one of"):
        checks["SP"].slope("logit")
    with pytest.raises(ValueError, match="`step` must be in"):
        checks["SP"].slope("logits", 4)
