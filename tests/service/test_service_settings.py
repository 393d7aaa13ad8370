"""Settings from the environment, and `nmt serve` flags mapped onto them."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from model.errors import ModelError
from service import cli
from service.settings import DEFAULT_MODEL_DIR, DEFAULT_QUANTIZE, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NMT_MODELS", "NMT_QUANTIZE", "NMT_API_KEYS", "NMT_MAX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.models == [DEFAULT_MODEL_DIR]
    assert Path(cli.__file__).resolve().parents[1] / "models/en-de-multi30k" == DEFAULT_MODEL_DIR
    assert settings.quantize == DEFAULT_QUANTIZE
    assert settings.api_keys == [] and settings.cors_origins == []


def test_environment_with_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_MODELS", "models/a, models/b")
    monkeypatch.setenv("NMT_API_KEYS", "k1,k2,")
    monkeypatch.setenv("NMT_CORS_ORIGINS", "https://example.org")
    monkeypatch.setenv("NMT_MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("NMT_DEVICE", "cpu")
    monkeypatch.setenv("NMT_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.models == [Path("models/a"), Path("models/b")]
    assert settings.api_keys == ["k1", "k2"]
    assert settings.cors_origins == ["https://example.org"]
    assert (settings.max_batch_size, settings.device, settings.log_level) == (1, "cpu", "debug")


def test_bad_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_QUANTIZE", "int4")
    with pytest.raises(ValueError, match="quantize"):
        Settings()


@pytest.mark.parametrize(
    ("env", "flags", "said"),
    [
        ({"NMT_DEVICE": "tpu"}, {}, "NMT_DEVICE='tpu': Input should be 'cpu', 'cuda' or 'auto'"),
        (
            {"NMT_REQUEST_TIMEOUT_S": "inf"},
            {},
            "NMT_REQUEST_TIMEOUT_S='inf': Input should be a finite",
        ),
        (
            {"NMT_THREADS": "abc"},
            {"port": -1},
            "NMT_THREADS='abc': Input should be a valid integer",
        ),
        (
            {"NMT_THREADS": "abc"},
            {"port": -1},
            "; --port=-1: Input should be greater than or equal to 0",
        ),
        ({}, {"models": []}, "--model=[]: List should have at least 1 item"),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_variable_or_flag(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flags: dict[str, object], said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as caught:
        Settings.load(**flags)
    assert said in str(caught.value) and "\n" not in str(caught.value)
    assert "pydantic.dev" not in str(caught.value)


def test_serve_refuses_cuda_without_cuda_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import uvicorn

    if torch.cuda.is_available():
        pytest.skip("CUDA is here")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("server started"))
    with pytest.raises(ModelError, match=r"CUDA is not available \(--device / NMT_DEVICE\)"):
        cli.serve(Settings(device="cuda"))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nmt")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_serve_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_PORT", "7000")
    monkeypatch.setenv("NMT_THREADS", "3")
    served: list[Settings] = []
    monkeypatch.setattr(cli, "serve", served.append)
    args = parse(
        "serve", "--model", "a", "--model", "b", "--port", "9001", "--quantize", "int8",
        "--model-workers", "2", "--lanes", "1",
    )  # fmt: skip
    assert args.func(args) == 0
    (settings,) = served
    assert settings.models == [Path("a"), Path("b")]
    assert (settings.port, settings.quantize, settings.threads) == (9001, "int8", 3)
    assert (settings.model_workers, settings.lanes) == (2, 1)
    assert settings.host == "127.0.0.1"


@pytest.mark.parametrize(("lanes", "want"), [(None, (2, 1)), (1, (1, 2))])
def test_the_models_cores_go_to_lanes_unless_nmt_lanes_is_1(
    tiny_bundle: Path, lanes: int | None, want: tuple[int, int]
) -> None:
    import torch

    from service.model_workers import load_translator

    before = torch.get_num_threads()
    try:
        settings = Settings(models=[tiny_bundle], threads=2, lanes=lanes, quantize="int8")
        translator = load_translator(tiny_bundle, settings)
        assert (translator.lanes, torch.get_num_threads()) == want  # type: ignore[attr-defined]
    finally:
        torch.set_num_threads(before)


def test_serve_is_registered_for_the_nmt_command() -> None:
    commands = {ep.name: ep.value for ep in entry_points(group="lstm_nmt.commands")}
    assert commands["service"] == "service.cli:add_commands"


def test_serve_runs_one_uvicorn_worker_and_leaves_the_access_log_to_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    cli.serve(Settings())
    (kwargs,) = calls
    assert kwargs["workers"] == 1 and kwargs["access_log"] is False  # service/metrics.py


def test_serve_refuses_a_directory_that_is_not_a_bundle_before_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    from model.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("server started"))
    assert main(["serve", "--model", str(tmp_path)]) == 2  # one logged line, no traceback


def test_serve_refuses_two_bundles_with_one_id_before_loading_either(
    monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path
) -> None:
    """Found only after both had loaded and warmed up, it was a traceback."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("server started"))
    with pytest.raises(ValueError, match="model id 'tiny-test' twice; ids must be unique"):
        cli.serve(Settings(models=[tiny_bundle, tiny_bundle], device="cpu"))
