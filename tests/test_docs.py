"""The documentation: every ```python block of docs/ runs, and the site builds with `mkdocs build --strict`.

Each page runs in one namespace, its blocks in order, in a temporary working directory (the Keras guide saves a
model). A page whose blocks import a framework that is not installed is skipped. Blocks that cannot run here (8
devices, shell commands) use another fence (```py, ```bash, ```text) and are not executed.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports Keras: jinit's samples are JAX arrays

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import jinit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FENCE = re.compile(r"^\s*```+\s*python\b", re.MULTILINE)  # any fence that opens a python block
IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:jinit\.)?(flax|haiku|equinox|keras|optax)\b", re.MULTILINE)


def blocks(page: Path) -> list[tuple[int, str]]:
    """The page's ```python blocks, each with the line number of its first line."""
    text = page.read_text()
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1)) for match in BLOCK.finditer(text)]


EXAMPLE_PAGES = [page for page in PAGES if blocks(page)]


def test_every_page_is_found():
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    expected = {"index.md", "api.md", "naming.md", "benchmarks.md", "distributions.md"}
    guides = ("flax", "haiku", "equinox", "keras", "sharding", "models", "fans", "pytorch", "mup", "adapters", "audit")
    expected |= {f"guides/{name}.md" for name in guides}
    assert expected <= names
    for page in PAGES:  # a python fence that BLOCK misses (indented, say) would go untested
        assert len(FENCE.findall(page.read_text())) == len(blocks(page)), page


@pytest.mark.filterwarnings(
    # Keras 3.15 saving converts variables with a NumPy call that warns (built-in initializers too)
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda page: page.relative_to(DOCS).as_posix())
def test_page_examples_run(page, tmp_path, monkeypatch):
    code = blocks(page)
    for framework in sorted({name for _, block in code for name in IMPORT.findall(block)}):
        pytest.importorskip(framework, reason=f"{page.name} needs {framework}: pip install 'jinit[{framework}]'")
    asserts = sum(isinstance(node, ast.Assert) for _, block in code for node in ast.walk(ast.parse(block)))
    assert asserts, f"{page.name}: its examples check none of what the page says"
    monkeypatch.chdir(tmp_path)
    # a real module, so that classes defined by the page (Flax modules, dataclasses) find their module
    module = types.ModuleType(f"docs_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for line, block in code:  # a failing assert of the page fails the test
        exec(compile("\n" * (line - 1) + block, str(page), "exec"), module.__dict__)


SITE_NEEDS = {  # module: package
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocstrings_handlers.python": "mkdocstrings-python",
    "matplotlib": "matplotlib",
    "scipy": "scipy",
}


def test_site_builds(tmp_path):
    """`make docs`, in a temporary copy of the pages: the figure and the site are written there, never here."""
    for module, package in SITE_NEEDS.items():
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"building the site needs {package}: pip install -e '.[plot]' --group docs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about its successor
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(DOCS, tmp_path / "docs", ignore=shutil.ignore_patterns("img"))
    (tmp_path / "src").symlink_to(ROOT / "src")  # the API reference reads the sources
    (tmp_path / "docs" / "img").mkdir()
    plot = [sys.executable, str(ROOT / "examples" / "plot_distributions.py"), "--out", "docs/img/distributions.png"]
    proc = subprocess.run(plot, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    proc = subprocess.run(build, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-10000:]
    assert "WARNING" not in output, output[-10000:]
    assert (site / "img" / "distributions.png").is_file()
    api = (site / "api" / "index.html").read_text()
    names = [f"jinit.{name}" for name in jinit.__all__]
    names += ["jinit.haiku.to_haiku", "jinit.haiku.HaikuInitializer", "jinit.keras.KerasInitializer"]
    missing = [name for name in names if f'id="{name}"' not in api]
    assert not missing, f"the API reference does not document {missing}"
