"""`jinit.audit`'s checks of where values came from: key reuse (keras-hub's Gemma pattern, through Keras itself),
parameters not re-initialized against a reference, replicas that differ across processes; and their false
positive rates, bounded exactly and measured over many keys."""

import json
import os
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

import jinit
from jinit._src import provenance

KEY = jax.random.key(3)
sys.path.insert(0, str(Path(__file__).parent / "multiprocess"))
from launch import run_workers  # noqa: E402


def model(width=64, layers=6):
    """A small transformer's specs: every parameter random and drawn from its own path key by `init_tree`."""
    specs = {"embed": jinit.ParamSpec((100, width), jinit.normal(0.02))}
    for i in range(layers):
        specs[f"h{i}"] = {
            "q": jinit.ParamSpec((width, width), jinit.glorot_uniform()),
            "k": jinit.ParamSpec((width, width), jinit.glorot_uniform()),
            "v": jinit.ParamSpec((width, width), jinit.glorot_uniform()),
            "o": jinit.ParamSpec((width, width), jinit.scaled(jinit.normal(0.02), 0.5)),
            "up": jinit.ParamSpec((width, 4 * width), jinit.he_normal()),
            "down": jinit.ParamSpec((4 * width, width), jinit.orthogonal()),
            "b": jinit.ParamSpec((width,), jinit.zeros),
        }
    return specs


def test_the_false_positive_bound_is_scipys_beta_tail():
    for m in (32, 100, 10_000):
        exact = stats.beta(0.5, (m - 2) / 2).sf((1 - provenance.TOLERANCE) ** 2)
        bound = provenance.beta_tail(m)
        assert exact <= bound <= 10 * exact + 1e-300
    assert provenance.beta_tail(provenance.HEAD) < 1e-60


def test_correctly_drawn_models_are_never_flagged_over_many_keys():
    specs = model()
    for seed in range(12):
        params = jinit.init_tree(jax.random.key(seed), specs)
        report = jinit.audit(params, specs, alpha=0.01)
        reasons = [row.reason for row in report.rows if "one key" in row.reason or "replicas" in row.reason]
        assert reasons == []


def test_one_key_for_two_parameters_is_found_whatever_their_scale_or_shape():
    key = jax.random.key(9)
    params = {
        "a": jinit.glorot_uniform()(key, (64, 64)),
        "same": jinit.glorot_uniform()(key, (64, 64)),  # bitwise equal
        "scaled": jinit.glorot_uniform()(key, (64, 256)),  # a prefix of a larger draw, another limit
        "other": jinit.glorot_uniform()(jax.random.key(10), (64, 64)),
    }
    report = jinit.audit(params, [(".*", jinit.glorot_uniform())], alpha=0.01)
    reasons = {row.path: row.reason for row in report.rows}
    assert "bitwise equal to 'same'" in reasons["a"] and "bitwise equal to 'a'" in reasons["same"]
    assert "correlation +1.000000 with 'a' over 4096 elements" in reasons["scaled"]
    assert "one key" not in reasons["other"]
    report = jinit.audit(params, [(".*", jinit.glorot_uniform())], duplicates=False, alpha=0.01)
    assert all("one key" not in row.reason for row in report.rows)


def test_keras_hubs_gemma_attention_pattern_is_caught():
    # keras_hub 0.21.1, src/models/gemma/gemma_attention.py: one initializer object,
    # `keras.initializers.get(clone_initializer("glorot_uniform"))`, is passed to the query, key and value
    # EinsumDense layers. Keras 3 seeds an unseeded initializer once, when it is built, so every call with one
    # shape gives the same values: the key and value kernels are equal, the query's a prefix of them.
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    init = keras.initializers.get("glorot_uniform")
    heads = {"query": 4, "key": 1, "value": 1}
    kernels = {}
    for name, n in heads.items():
        layer = keras.layers.EinsumDense("btd,dnh->btnh", output_shape=(None, n, 16), kernel_initializer=init)
        layer.build((None, None, 64))
        kernels[name] = layer.kernel.value
    rules = [(".*", jinit.glorot_uniform(**jinit.einsum_axes("btd,dnh->btnh")))]
    report = jinit.audit(kernels, rules)
    reasons = {row.path: row.reason for row in report.rows}
    assert "bitwise equal to 'value'" in reasons["key"]
    assert "bitwise equal to 'key'" in reasons["value"]
    assert "correlation +1.000000 with 'key' over 1024 elements" in reasons["query"]


def test_a_parameter_equal_to_the_reference_was_not_reinitialized():
    specs = model(layers=2)
    old = jinit.init_tree(jax.random.key(1), specs)
    fresh = jinit.init_tree(jax.random.key(2), specs)
    assert jinit.audit(fresh, specs, reference=old).ok
    stale = dict(fresh, embed=old["embed"])
    stale["h1"] = dict(fresh["h1"], o=old["h1"]["o"] * 3)  # another scale of the old values
    report = jinit.audit(stale, specs, reference=old)
    reasons = {row.path: row.reason for row in report.rows}
    assert report.flagged == ("embed", "h1/o")
    assert "not re-initialized" in reasons["embed"] and "correlation +1.000000 with `reference`" in reasons["h1/o"]
    # deterministic parameters (zeros) equal to the reference are as meant
    assert "reference" not in reasons["h0/b"]


def test_init_what_is_missing_then_audit_against_the_checkpoint():
    specs = model(layers=2)
    checkpoint = jinit.init_tree(jax.random.key(1), specs)
    partial = {path: value for path, value in checkpoint.items() if path != "h1"}  # h1 is new
    params = jinit.init_tree(jax.random.key(2), specs, existing=partial)
    report = jinit.audit(params, specs, reference=checkpoint)
    # exactly the random parameters passed through from the checkpoint are "not re-initialized"; h1's are fresh
    kept = {row.path for row in report.rows if not row.path.startswith("h1/") and not row.path.endswith("/b")}
    assert set(report.flagged) == kept
    assert all("not re-initialized" in row.reason for row in report.rows if row.flagged)


def test_reference_must_hold_arrays():
    params = {"w": jinit.normal()(KEY, (8, 8))}
    with pytest.raises(TypeError, match="`reference` must have array leaves"):
        jinit.audit(params, [(".*", jinit.normal())], reference={"w": "nope"})
    for name in ("duplicates", "replicas"):
        with pytest.raises(TypeError, match=f"`{name}`"):
            jinit.audit(params, [(".*", jinit.normal())], **{name: "yes"})


def test_checksums_see_every_bit():
    x = jinit.normal()(KEY, (1000,))
    base = int(provenance.checksum(x))
    assert int(provenance.checksum(x + 0)) == base
    for changed in (
        x.at[7].set(-x[7]),
        x.at[999].set(np.nextafter(np.float32(x[999]), np.float32(np.inf))),
        x[::-1],
        x.at[3].set(-0.0),
    ):
        assert int(provenance.checksum(changed)) != base


def test_replicas_that_differ_across_processes_are_flagged():
    processes = 2
    with tempfile.TemporaryDirectory() as output:
        run_workers("audit_worker.py", processes, output)
        for i in range(processes):
            with open(os.path.join(output, f"{i}.json")) as f:
                result = json.load(f)
            assert result["flagged"] == ["per_process"], result
            assert "differ across processes (2 different values among 2 processes)" in result["reasons"]["per_process"]
