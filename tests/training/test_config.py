"""TrainConfig loading: errors with dotted paths, overrides, path resolution, saving, examples."""

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from training.config import (
    ConfigError,
    TrainConfig,
    config_to_dict,
    load_config,
    save_resolved,
)

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
data:
  train_src: corpus/train.en
  train_tgt: corpus/train.de.gz
  valid_tsv: /abs/valid.tsv
loop:
  max_steps: 100
run_dir: runs/test
"""


def write_config(tmp_path: Path, text: str = MINIMAL) -> Path:
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_with(tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(write_config(tmp_path), overrides)


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_with(tmp_path)
    assert cfg.loop.max_steps == 100
    assert cfg.optim.betas == (0.9, 0.98)
    assert cfg.tokenizer.joint and cfg.model.shared_vocab


def test_unknown_key_names_full_path_and_suggests(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL.replace("max_steps", "max_step"))
    with pytest.raises(
        ConfigError, match=r"^loop.max_step is not a field; did you mean loop.max_steps\?$"
    ):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"data.clean.dedupe is not a field; did you mean data.clean.dedup\?"
    ):
        load_with(tmp_path, "data.clean.dedupe=false")
    with pytest.raises(ConfigError, match=r"^optimizer is not a field; did you mean optim\?$"):
        load_with(tmp_path, "optimizer.lr=1")


def test_unknown_key_without_close_match_lists_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval.zzz is not a field; valid: beam_size, "):
        load_with(tmp_path, "eval.zzz=1")


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=fast", "optim.lr: expected float, got str 'fast'"),
        ("loop.batch_tokens=4096.5", "loop.batch_tokens: expected int, got float"),
        ("loop.max_steps=true", "loop.max_steps: expected int or null, got bool"),
        ("model.tie_embeddings=1", "model.tie_embeddings: expected bool, got int"),
        ("loop.amp=fp8", "loop.amp: expected one of 'none', 'bf16', 'fp16', got str 'fp8'"),
        ("optim.betas=[0.9]", "optim.betas: expected a list of 2 (float, float)"),
        ("optim.betas=[0.9, x]", "optim.betas[1]: expected float, got str 'x'"),
        ("eval=3", "eval: expected a mapping (EvalConfig), got int 3"),
    ],
)
def test_wrong_type_names_path_and_expected_type(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_with(tmp_path, override)


def test_int_and_exponent_strings_accepted_for_float(tmp_path: Path) -> None:
    # `1e-3` without a dot is a string to YAML 1.1 (PyYAML); it is still clearly a float.
    cfg = load_with(tmp_path, "optim.lr=1", "optim.min_lr=1e-5", "optim.betas=[0, 0.5]")
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.min_lr == 1e-5
    assert cfg.optim.betas == (0.0, 0.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.lr=0"], "optim: lr must be positive"),
        (["data.clean.max_ratio=0.5"], "data.clean: max_ratio must be at least 1.0"),
        (
            ["loop.max_steps=null", "loop.max_epochs=null"],
            "loop: set max_steps, max_epochs or max_minutes",
        ),
        (["model.hidden_size=33"], "model: hidden_size must be even"),
        (["tokenizer.joint=false"], "model.shared_vocab needs tokenizer.joint"),
        (["data.train_tsv=x.tsv"], "data: set train_src and train_tgt, or train_tsv"),
        (["data.valid_tsv=null"], "data: set valid_src and valid_tgt, or valid_tsv"),
    ],
)
def test_value_checks_name_the_section(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_with(tmp_path, *overrides)


def test_missing_required_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL.replace("run_dir: runs/test\n", ""))
    with pytest.raises(ConfigError, match="run_dir is required"):
        load_config(path)


def test_set_overrides_parse_yaml_values(tmp_path: Path) -> None:
    cfg = load_with(
        tmp_path,
        "loop.max_steps=7",
        "loop.amp=bf16",
        "eval.max_valid_sentences=null",
        "optim.betas=[0.8, 0.9]",
        "model.attention=dot",
        "tokenizer.joint=false",
        "model.shared_vocab=false",
        "data.clean.len_unit=chars",
    )
    assert cfg.loop.max_steps == 7 and cfg.loop.amp == "bf16"
    assert cfg.eval.max_valid_sentences is None
    assert cfg.optim.betas == (0.8, 0.9)
    assert (cfg.model.attention, cfg.tokenizer.joint) == ("dot", False)
    assert cfg.data.clean.len_unit == "chars"


def test_malformed_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_with(tmp_path, "loop.max_steps")


def test_data_paths_resolve_from_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_with(tmp_path, "data.test_src=mine.en", "data.test_tgt=../mine.de")
    conf_dir = tmp_path / "conf"
    assert cfg.data.train_src == str(conf_dir / "corpus" / "train.en")
    assert cfg.data.valid_tsv == "/abs/valid.tsv"  # absolute paths stay
    # Command-line paths and run_dir are relative to the working directory.
    assert cfg.data.test_src == str(elsewhere / "mine.en")
    assert cfg.data.test_tgt == str(tmp_path / "mine.de")
    assert cfg.run_dir == str(elsewhere / "runs" / "test")


def test_saved_config_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_with(tmp_path, "optim.betas=[0.8, 0.95]", "loop.amp=fp16", "model.dropout=0.1")
    saved = save_resolved(cfg, tmp_path / "run" / "config.yaml")
    monkeypatch.chdir(tmp_path / "run")  # another directory must not change the result
    assert load_config(saved) == cfg
    assert yaml.safe_load(saved.read_text())["optim"]["betas"] == [0.8, 0.95]


def test_to_model_config(tmp_path: Path) -> None:
    cfg = load_with(tmp_path, "model.attention=additive", "model.hidden_size=64")
    kwargs = cfg.model.to_model_kwargs(120, 120)
    assert kwargs["src_vocab_size"] == kwargs["tgt_vocab_size"] == 120
    assert (kwargs["attention"], kwargs["hidden_size"]) == ("additive", 64)
    model_config = pytest.importorskip("model.config")
    built = cfg.model.to_model_config(120, 120)
    assert isinstance(built, model_config.ModelConfig)
    assert built.to_dict() == kwargs


def leaf_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys |= leaf_keys(value, path + ".") if isinstance(value, dict) else {path}
    return keys


@pytest.mark.parametrize("name", ["multi30k_en_de.yaml", "tiny_copy.yaml"])
def test_example_configs_load_and_set_every_key(name: str) -> None:
    path = REPO / "configs" / name
    cfg = load_config(path)
    # Every field is written out, so the file documents all settings (and new ones get added).
    assert leaf_keys(yaml.safe_load(path.read_text())) == leaf_keys(config_to_dict(cfg))


def test_multi30k_config_reads_the_download_commands_folder_and_comments_every_key() -> None:
    path = REPO / "configs" / "multi30k_en_de.yaml"
    cfg = load_config(path)
    downloaded = os.path.normpath(REPO / "data" / "multi30k")  # nmt data multi30k --dest
    assert cfg.data.train_src == f"{downloaded}/train.en.gz"
    assert cfg.data.test_tgt == f"{downloaded}/test_2016_flickr.de.gz"
    assert (cfg.tokenizer.model_type, cfg.tokenizer.vocab_size) == ("unigram", 8000)
    assert (cfg.model.hidden_size, cfg.model.attention, cfg.eval.beam_size) == (512, "general", 5)
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*\w+:", line):
            commented = "#" in line or lines[i - 1].strip().startswith("#")
            assert commented, f"line {i + 1} has no comment: {line}"
