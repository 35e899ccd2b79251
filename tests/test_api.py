"""The public API: the names in `jinit.__all__`, JAX's signatures, and the doctests of the README table."""

import inspect

import jax

import jinit

EXPECTED = {
    "Initializer", "InitializerLike", "compute_fans", "constant", "delta_orthogonal", "glorot_normal",
    "glorot_uniform", "he_normal", "he_uniform", "identity", "kaiming_normal", "kaiming_uniform", "lecun_normal",
    "lecun_uniform", "normal", "ones", "ones_init", "zeros_init",
    "orthogonal", "random_normal", "random_uniform", "truncated_normal",
    "uniform", "variance_scaling", "xavier_normal", "xavier_uniform", "zeros",
    "serialize", "deserialize", "get", "register", "registered_names", "to_keras", "stft",
    "keras_variance_scaling", "calculate_gain", "dirac", "sparse", "torch_kaiming_normal", "torch_kaiming_uniform",
    "torch_xavier_normal", "torch_xavier_uniform", "trunc_normal", "einsum_axes",
    "torch_bias", "torch_linear", "torch_conv",
    "ParamSpec", "init_tree", "init_like", "path_key", "Progress", "progress_bar", "scaled", "packed",
    "lora", "LoraInit",
    "mup", "MuP", "mup_scale", "mu_adam", "mu_adamw", "mu_sgd", "mup_depth", "DepthMuP", "coord_check", "CoordCheck",
    "resize_rows",
    "audit", "AuditReport", "AuditRow",
}  # fmt: skip

# Factories that jax.nn.initializers also has: same argument names, order, kinds and defaults (jinit may add
# keyword-only arguments at the end, such as `mean`).
SHARED = [
    "constant", "normal", "uniform", "truncated_normal", "variance_scaling", "glorot_uniform", "glorot_normal",
    "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "xavier_uniform", "xavier_normal",
    "kaiming_uniform", "kaiming_normal", "orthogonal", "delta_orthogonal",
]  # fmt: skip


def test_all_is_the_public_api():
    assert set(jinit.__all__) == EXPECTED
    assert len(jinit.__all__) == len(set(jinit.__all__))
    assert all(hasattr(jinit, name) for name in jinit.__all__)
    assert isinstance(jinit.__version__, str)


def test_signatures_match_jax():
    for name in SHARED:
        ours = inspect.signature(getattr(jinit, name)).parameters
        theirs = inspect.signature(getattr(jax.nn.initializers, name)).parameters
        theirs = {k: p for k, p in theirs.items() if k != "out_sharding"}  # jinit takes it at call time
        assert list(ours)[: len(theirs)] == list(theirs), name
        for arg, param in theirs.items():
            assert ours[arg].kind == param.kind, (name, arg)
            assert ours[arg].default == param.default, (name, arg, ours[arg].default, param.default)


def test_aliases_are_the_same_factories():
    assert jinit.xavier_uniform is jinit.glorot_uniform and jinit.xavier_normal is jinit.glorot_normal
    assert jinit.kaiming_uniform is jinit.he_uniform and jinit.kaiming_normal is jinit.he_normal


def test_ready_values():
    for init in (jinit.zeros, jinit.ones, jinit.glorot_uniform()):
        assert isinstance(init, jinit.Initializer)
    assert repr(jinit.zeros) == "zeros" and jinit.zeros == jinit.get("zeros")


def test_import_jinit_imports_no_framework():
    import subprocess
    import sys

    code = "import sys, jinit; print(sorted(m for m in ('flax', 'haiku', 'equinox', 'keras') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
