"""A Griffe extension for the API reference: module attributes that are functions at run time become functions.

mkdocstrings reads jinit's source without importing it, which misses the functions built at import time:
``glorot_uniform = _factory(...)`` in ``jinit._src.variance_scaling`` (the Glorot, He and LeCun presets, whose
docstrings are generated) and aliases such as ``xavier_uniform = glorot_uniform``. For every module of jinit
that has such attributes, this extension imports the module, inspects it, and puts the inspected functions (and
aliases to them) in place of the attributes. Everything else keeps the static analysis, so the reference does not
import Keras or Haiku. Loaded from mkdocs.yml: ``extensions: [docs/griffe_runtime_functions.py]``.
"""

import importlib
import inspect
from pathlib import Path
from typing import Any

import griffe


class RuntimeFunctions(griffe.Extension):
    """Replaces module attributes of jinit whose values are functions at run time with those functions."""

    def on_module(self, *, mod: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if not mod.path.startswith("jinit._src.") or mod.filepath is None:
            return
        attributes = [name for name, member in mod.members.items() if not member.is_alias and member.is_attribute]
        if not attributes:
            return
        runtime = importlib.import_module(mod.path)
        functions = [name for name in attributes if inspect.isfunction(getattr(runtime, name, None))]
        if not functions:
            return
        filepath = Path(str(mod.filepath))
        root = filepath.parents[len(mod.path.split("."))]  # the folder holding the `jinit` package: src/
        inspected = griffe.inspect(mod.path, filepath=filepath, import_paths=[root])
        for name in functions:
            mod.set_member(name, inspected.members[name])
