"""The inference bundle: round trip, fp16, and clear errors for damaged or foreign bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import (
    FORMAT_VERSION,
    BundleError,
    DecodeOptions,
    Seq2Seq,
    Tokenizer,
    Translator,
    UnknownFormatVersion,
    beam_search,
    greedy_search,
    load_bundle,
    save_bundle,
)
from model.bundle import sha256_file

TEXTS = ["ba be ki", "mo na pa ta sa de do", "ku", "de do di du"]


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle, free to damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def rewrite_manifest(bundle: Path) -> None:
    """Recompute the checksums, so a deliberately wrong file passes the integrity check."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["sha256"] = {name: sha256_file(bundle / name) for name in manifest["sha256"]}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def edit_json(path: Path, key: str, value: object) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


def translations(translator: Translator, options: DecodeOptions) -> list[tuple[str, float]]:
    return [(r.text, r.score) for r in translator.translate(TEXTS, options)]


def test_bundle_files_and_manifest(tiny_bundle: Path) -> None:
    names = sorted(p.name for p in tiny_bundle.iterdir())
    assert names == sorted(
        ["config.json", "model.safetensors", "spm.model", "metadata.json", "manifest.json"]
    )
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert set(manifest["sha256"]) == set(names) - {"manifest.json"}
    config = json.loads((tiny_bundle / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION and config["dtype"] == "fp32"
    metadata = json.loads((tiny_bundle / "metadata.json").read_text())
    assert metadata["model_id"] == "tiny-test" and "torch" in metadata["versions"]


def test_round_trip_gives_identical_weights_and_translations(
    tiny_bundle: Path, tiny_model: Seq2Seq, tokenizer: Tokenizer
) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.config == tiny_model.config
    assert bundle.metadata["source_lang"] == "xx"
    assert bundle.checksum == sha256_file(tiny_bundle / "manifest.json")
    loaded = bundle.build_model()
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # Tied weights stay tied after loading (safetensors stored only one copy).
    assert loaded.decoder.generator.weight is loaded.encoder.embedding.weight

    translator = Translator(bundle)
    for options in (DecodeOptions(beam_size=1), DecodeOptions(beam_size=3, n_best=2)):
        got = translator.translate(TEXTS, options)
        ids = [tokenizer.encode_source(t) for t in TEXTS]
        src_lens = torch.tensor([len(i) for i in ids])
        src = torch.nn.utils.rnn.pad_sequence([torch.tensor(i) for i in ids], batch_first=True)
        search = greedy_search if options.beam_size == 1 else beam_search
        with torch.no_grad():
            want = search(tiny_model, tiny_model.encode(src, src_lens), src_lens, options)
        for result, hyps in zip(got, want, strict=True):
            assert [c.text for c in result.candidates] == [
                tokenizer.decode_target(h.token_ids) for h in hyps
            ]
            # Float32 sums in another order (the compiled loop) may differ in the last bit.
            assert [c.score for c in result.candidates] == pytest.approx(
                [h.score for h in hyps], rel=1e-6, abs=1e-6
            )


def test_fp16_bundle_loads_with_rounded_weights(
    tmp_path: Path, tiny_model: Seq2Seq, tokenizer: Tokenizer, tiny_bundle: Path
) -> None:
    out = save_bundle(tmp_path / "fp16", tiny_model, tokenizer, dtype="fp16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "fp16"
    stored = load_file(str(out / "model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    fp32_size = (tiny_bundle / "model.safetensors").stat().st_size
    assert (out / "model.safetensors").stat().st_size < 0.6 * fp32_size

    model = load_bundle(out).build_model()  # upcast to float32
    for name, tensor in tiny_model.state_dict().items():
        got = model.state_dict()[name]
        assert got.dtype == torch.float32
        assert torch.equal(got, tensor.half().float()), name
    results = Translator.from_dir(out).translate(TEXTS, DecodeOptions(beam_size=2))
    assert all(r.error is None and r.candidates for r in results)


def test_save_replaces_an_existing_bundle_atomically(
    tmp_path: Path, tiny_model: Seq2Seq, tokenizer: Tokenizer
) -> None:
    out = tmp_path / "b"
    save_bundle(out, tiny_model, tokenizer)
    (out / "stale.txt").write_text("left over")
    save_bundle(out, tiny_model, tokenizer, metadata={"model_id": "second"})
    assert not (out / "stale.txt").exists()
    assert load_bundle(out).metadata["model_id"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temporary directory left behind


@pytest.mark.parametrize("what", ["run directory", "working directory", "file"])
def test_save_refuses_to_replace_anything_but_a_bundle(
    tmp_path: Path,
    tiny_model: Seq2Seq,
    tokenizer: Tokenizer,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
) -> None:
    """An export to a run directory, or to ".", deleted what was there."""
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "notes.txt").write_text("precious\n")
    out: Path | str = precious
    if what == "working directory":
        monkeypatch.chdir(precious)
        out = "."
    elif what == "file":
        out = precious / "notes.txt"
    with pytest.raises(ValueError, match="is not a model bundle|is a file"):
        save_bundle(out, tiny_model, tokenizer)
    assert (precious / "notes.txt").read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no temporary left either


def test_a_failed_save_leaves_nothing_behind(
    tmp_path: Path, tiny_model: Seq2Seq, tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("model.bundle.save_file", fail)
    with pytest.raises(OSError, match="No space"):
        save_bundle(tmp_path / "b", tiny_model, tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_flipped_byte_in_weights_is_reported(bundle_copy: Path) -> None:
    weights = bundle_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data, so the file still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt") as info:
        load_bundle(bundle_copy)
    assert info.value.file == weights
    assert "model.safetensors" in str(info.value)


def test_missing_tokenizer_file_is_reported(bundle_copy: Path) -> None:
    (bundle_copy / "spm.model").unlink()
    with pytest.raises(BundleError, match="missing") as info:
        load_bundle(bundle_copy)
    assert info.value.file.name == "spm.model"
    assert "spm.model" in str(info.value)


@pytest.mark.parametrize("file", ["config.json", "manifest.json"])
@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, None, "1"])
def test_unknown_format_version_is_reported(bundle_copy: Path, file: str, version: object) -> None:
    edit_json(bundle_copy / file, "format_version", version)
    with pytest.raises(UnknownFormatVersion, match="format_version") as info:
        load_bundle(bundle_copy)
    assert info.value.file.name == file
    assert file in str(info.value) and str(FORMAT_VERSION) in str(info.value)


def test_wrong_tensor_shape_is_reported(bundle_copy: Path) -> None:
    weights = bundle_copy / "model.safetensors"
    tensors = load_file(str(weights))
    name = "decoder.combine.weight"
    tensors[name] = torch.zeros(tensors[name].size(0) + 1, tensors[name].size(1))
    save_file(tensors, str(weights))
    rewrite_manifest(bundle_copy)
    bundle = load_bundle(bundle_copy)  # the checksums are right; the shape is not
    with pytest.raises(BundleError, match="shape") as info:
        bundle.build_model()
    assert info.value.file == weights and name in str(info.value)
    with pytest.raises(BundleError, match="model.safetensors"):
        Translator.from_dir(bundle_copy)


def test_config_that_disagrees_with_the_weights_is_one_line(bundle_copy: Path) -> None:
    """An edited hidden_size: one line with the first tensor, both shapes and the count."""
    config = json.loads((bundle_copy / "config.json").read_text())
    assert config["model"]["hidden_size"] == 16
    config["model"]["hidden_size"] = 20  # bidirectional encoder: 8 -> 10 per direction
    (bundle_copy / "config.json").write_text(json.dumps(config))
    rewrite_manifest(bundle_copy)
    bundle = load_bundle(bundle_copy)
    stored, wanted = bundle.state_dict, Seq2Seq(bundle.config).state_dict()
    n_wrong = sum(n in stored and stored[n].shape != wanted[n].shape for n in wanted)
    assert n_wrong > 1
    with pytest.raises(BundleError) as info:
        bundle.build_model()
    weights = bundle_copy / "model.safetensors"
    assert info.value.file == weights
    # The first LSTM weight holds 4 gates of 8 (stored) or 10 (config.json) units, embedding 8.
    assert str(info.value) == (
        f"{weights}: wrong tensor shape in {n_wrong} tensors, first encoder.rnn.weight_ih_l0: "
        "[32, 8] in the weights, [40, 8] by config.json; config.json and the weights disagree "
        "(use the config.json exported with them)"
    )


def test_missing_tensor_is_reported(bundle_copy: Path) -> None:
    weights = bundle_copy / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["bridge_h.bias"]
    save_file(tensors, str(weights))
    rewrite_manifest(bundle_copy)
    with pytest.raises(BundleError, match="missing.*bridge_h.bias") as info:
        load_bundle(bundle_copy).build_model()
    assert info.value.file == weights


def test_unknown_config_key_is_reported(bundle_copy: Path) -> None:
    config = json.loads((bundle_copy / "config.json").read_text())
    config["model"]["hiden_size"] = 16
    (bundle_copy / "config.json").write_text(json.dumps(config))
    rewrite_manifest(bundle_copy)
    with pytest.raises(BundleError, match="hiden_size") as info:
        load_bundle(bundle_copy)
    assert info.value.file.name == "config.json"


def test_edited_config_without_new_checksum_is_corrupt(bundle_copy: Path) -> None:
    config = json.loads((bundle_copy / "config.json").read_text())
    config["model"]["hidden_size"] = 32
    (bundle_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="corrupt") as info:
        load_bundle(bundle_copy)
    assert info.value.file.name == "config.json"


def test_not_a_bundle_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="config.json"):
        load_bundle(tmp_path)


def test_a_file_is_not_a_bundle_directory(tiny_bundle: Path) -> None:
    """A file given as --model is named as a file, not as a missing directory."""
    weights = tiny_bundle / "model.safetensors"
    with pytest.raises(BundleError) as info:
        load_bundle(weights)
    assert info.value.file == weights
    assert str(info.value) == (
        f"{weights}: is a file, not a model bundle directory "
        "(one holding config.json and model.safetensors)"
    )


def test_bundle_is_readable_by_other_users(tiny_bundle: Path) -> None:
    """The service may run as another user than the one who exported the bundle."""
    assert tiny_bundle.stat().st_mode & 0o755 == 0o755
    for file in tiny_bundle.iterdir():
        assert file.stat().st_mode & 0o644 == 0o644, file.name
