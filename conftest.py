"""Doctests of the framework integrations run only where their framework is installed (`make test` installs
them all); without it, the module is left out of collection rather than failing to import."""

import importlib.util

collect_ignore = [
    f"src/jinit/{module}.py" for module in ("haiku", "keras") if importlib.util.find_spec(module) is None
]
