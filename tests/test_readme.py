"""The README's Python examples run as written."""

import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_examples_run():
    assert BLOCKS, "the README has its quickstart (the other examples are on the documentation's pages)"
    namespaces = []
    for block in BLOCKS:
        namespaces.append({})
        exec(compile(block, str(README), "exec"), namespaces[-1])
    quickstart = namespaces[0]
    assert quickstart["init"] == quickstart["jinit"].glorot_uniform()
    assert quickstart["w16"].dtype == quickstart["jax"].numpy.bfloat16
