"""Fixtures for the training-run tests: tiny copy-task data and tiny run configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from run_helpers import tiny_run

from training.config import TrainConfig, config_from_dict
from training.synthetic import write_copy_task
from training.typed_config import merge


@pytest.fixture(autouse=True)
def _train_on_one_thread(one_thread: None) -> None:
    """Tiny models train fastest on one thread; more only stall on a busy CI machine."""


@pytest.fixture(scope="session")
def copy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The copy task, small: 120 training pairs, 10 validation and 10 test pairs."""
    out = tmp_path_factory.mktemp("copy_data")
    write_copy_task(out, sizes={"train": 120, "valid": 10, "test": 10}, seed=0)
    return out


@pytest.fixture
def make_raw(copy_data: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``make_raw("a", loop={"max_steps": 4})``: the raw config of a tiny run in tmp_path/a."""

    def make(run: str = "run", **sections: Any) -> dict[str, Any]:
        return merge(tiny_run(copy_data, tmp_path / run), sections)

    return make


@pytest.fixture
def make_config(make_raw: Callable[..., dict[str, Any]]) -> Callable[..., TrainConfig]:
    """``make_config("a", optim={"accumulate": 2})``: the TrainConfig of a tiny run."""

    def make(run: str = "run", **sections: Any) -> TrainConfig:
        return config_from_dict(make_raw(run, **sections))

    return make
