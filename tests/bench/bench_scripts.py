"""The scripts of bench/, imported once each for the tests (bench/ holds scripts, not a
package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _import(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


load = _import("load")  # this module itself is imported once, so the scripts are too
decode = _import("decode")
