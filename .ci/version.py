"""Prints jinit's version, read from src/jinit/__init__.py as hatch reads it (a regex: no JAX, nothing imported).

With an argument, a release tag, it checks instead that the tag is ``v`` and that version, and says so:
``python .ci/version.py v0.2.0`` exits with status 1 on a mismatch (what the release workflow runs first).
"""

import re
import sys
from pathlib import Path

INIT = Path(__file__).resolve().parent.parent / "src" / "jinit" / "__init__.py"


def version() -> str:
    found = re.findall(r"""^__version__ = ["']([^"']+)["']$""", INIT.read_text(encoding="utf-8"), re.MULTILINE)
    if len(found) != 1:
        sys.exit(f"Expected one `__version__ = '...'` line in {INIT}. Received: {len(found)}")
    return found[0]


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(version())
    elif sys.argv[1] == f"v{version()}":
        print(f"The tag {sys.argv[1]} is the package's version.")
    else:
        sys.exit(f"The tag must be `v` and the package's version, v{version()}. Received: tag={sys.argv[1]!r}")
