"""The README's Python examples run as written."""

import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_examples_run():
    assert BLOCKS, "the README has Python examples"
    for block in BLOCKS:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["init"] == namespace["jinit"].glorot_uniform()
    assert namespace["w16"].dtype == namespace["jax"].numpy.bfloat16
