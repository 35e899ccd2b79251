"""Packaging: the version in one place, the metadata, what an install without an optional framework says, and
`import jinit` surviving a JAX whose internals moved (each simulated in a process of its own)."""

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from packaging.version import Version

import jinit

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FRAMEWORKS = {"keras", "flax", "haiku", "equinox", "plot", "optax"}


def python(code, *args):
    """Runs `code` in a fresh interpreter; returns the finished process (never raises on its status)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


def test_the_version_is_pep_440_and_heads_the_changelog():
    assert str(Version(jinit.__version__)) == jinit.__version__  # already in normal form: the tag is v + it
    first = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert first is not None and first[1] == jinit.__version__


def test_the_release_check_reads_the_version_without_importing_jax():
    script = str(ROOT / ".ci" / "version.py")
    read = python(f"import runpy, sys; runpy.run_path({script!r}, run_name='__main__'); print('jax' in sys.modules)")
    assert (read.returncode, read.stdout.split()) == (0, [jinit.__version__, "False"]), read.stderr
    good = subprocess.run([sys.executable, script, f"v{jinit.__version__}"], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([sys.executable, script, "v0.0.1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "Received: tag='v0.0.1'" in bad.stderr


def test_metadata():
    project = PYPROJECT["project"]
    assert project["dynamic"] == ["version"]  # read from src/jinit/__init__.py, the one place it is written
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/jinit/__init__.py"
    classifiers = set(project["classifiers"])
    assert {"Typing :: Typed", "Development Status :: 3 - Alpha", "Operating System :: OS Independent"} <= classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= classifiers
    # PEP 639: the SPDX expression replaces the License classifiers, which PyPI and setuptools refuse beside it
    assert project["license"] == "Apache-2.0" and not any(c.startswith("License ::") for c in classifiers)
    assert project["authors"] == [{"name": "jinit developers"}] and project["keywords"]
    assert all(url.startswith("https://github.com/jinit-dev/jinit") for url in project["urls"].values())
    assert (ROOT / "src" / "jinit" / "py.typed").is_file()


def test_extras_are_frameworks_and_tools_are_dependency_groups():
    assert set(PYPROJECT["project"]["optional-dependencies"]) == FRAMEWORKS
    groups = PYPROJECT["dependency-groups"]
    assert set(groups) == {"test", "lint", "docs", "dev"}
    assert groups["dev"] == [{"include-group": name} for name in ("test", "lint", "docs")]
    assert "torch==2.13.0" in groups["test"]  # test-only: the oracle of tests/test_torch_layers.py


def test_import_jinit_keras_without_keras_says_what_to_install():
    proc = python("""
        import sys
        sys.modules["keras"] = None  # as if Keras were not installed
        try:
            import jinit.keras
        except ImportError as err:
            print(type(err.__cause__).__name__, "|", err)
        """)
    assert proc.returncode == 0, proc.stderr
    cause, message = proc.stdout.strip().split(" | ")
    assert cause == "ModuleNotFoundError"  # chained from the original error
    assert message == "jinit.keras needs Keras 3 (>= 3.15): pip install 'jinit[keras]'"


DRAWS = """
    import builtins, hashlib, json, sys

    import jax  # JAX itself imports its internals; only jinit's imports of them fail below
    import numpy as np

    if sys.argv[1] == "moved":
        real_import = builtins.__import__

        def moved(name, globals=None, locals=None, fromlist=(), level=0):
            importer = (globals or {}).get("__name__") or ""
            if importer.split(".")[0] == "jinit" and (name == "jax._src" or name.startswith("jax._src.")):
                raise ModuleNotFoundError(f"No module named {name!r} (simulated: a JAX that moved it)")
            return real_import(name, globals, locals, fromlist, level)

        builtins.__import__ = moved

    import jinit
    from jinit._src import engine, sites

    key = jax.random.key(0)
    out = {
        "glorot_uniform": jinit.glorot_uniform()(key, (300, 200)),  # one kernel, its buffer adopted
        "normal": jinit.normal(0.02)(key, (1024, 1024)),  # pieces gathered in one adopted host buffer
        "tree": jinit.init_tree(key, {
            "kernel": jinit.ParamSpec((256, 128), jinit.he_normal()),
            "embedding": jinit.ParamSpec((2048, 256), jinit.truncated_normal(0.02)),
            "bias": jinit.ParamSpec((128,), jinit.zeros),
        }),
    }
    drawn = None
    try:
        import flax.linen as nn
        import jinit.flax
    except ImportError:
        pass
    else:  # a traced model: its sites are found with the internals, and without them the program computes all
        model = nn.Sequential([nn.Dense(64, kernel_init=jinit.orthogonal()), nn.Dense(8, kernel_init=jinit.normal())])
        x = np.ones((2, 16), np.float32)
        out["flax"] = jinit.flax.init(model, key, x)
        out["flax.init"] = model.init(key, x)
        drawn = jinit.flax.initializer(model).drawn(key, x)  # the kernels drawn by the engine, not by the program
    leaves = jax.tree_util.tree_leaves_with_path(out)
    internals = {"pxla": engine.pxla, "core": engine.jax_core, "pe": sites._pe}
    print(json.dumps({
        "moved": [name for name, module in internals.items() if module is None],
        "drawn": drawn,
        "fast_adopt": engine._fast_adopt(),
        "arrays": {jax.tree_util.keystr(p): hashlib.sha256(np.asarray(x).tobytes()).hexdigest() for p, x in leaves},
    }))
"""


def test_import_jinit_survives_jax_internals_that_moved():
    runs = {}
    for mode in ("normal", "moved"):
        proc = python(DRAWS, mode)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["normal"]["moved"] == [] and runs["moved"]["moved"] == ["pxla", "core", "pe"]
    assert not runs["moved"]["fast_adopt"]  # the public `jax.device_put` instead
    arrays = runs["normal"]["arrays"]
    assert runs["moved"]["arrays"] == arrays  # bitwise the same values
    assert len(arrays) >= 5
    if importlib.util.find_spec("flax") is not None:
        flax = {path.removeprefix("['flax']"): h for path, h in arrays.items() if path.startswith("['flax']")}
        assert flax and flax == {p.removeprefix("['flax.init']"): h for p, h in arrays.items() if "flax.init" in p}
        assert runs["normal"]["drawn"] == ["params/layers_0/kernel", "params/layers_1/kernel"]
        assert runs["moved"]["drawn"] == []  # without the internals, no sites: the program computes every leaf
