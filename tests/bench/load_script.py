"""bench/load.py, imported once for the tests (bench/ holds scripts, not a package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _import() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_load", Path(__file__).resolve().parents[2] / "bench" / "load.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_load"] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


load = _import()  # this module itself is imported once, so the script is too
