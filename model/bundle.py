"""The inference bundle: a self-contained directory the service loads.

    config.json        ModelConfig, tokenizer files, weight dtype, format_version
    model.safetensors  tensors only, so loading never unpickles anything
    spm.model          (or spm.src.model + spm.tgt.model)
    metadata.json      languages, metrics with sacreBLEU signatures, data, training, versions
    shortlist.safetensors  optional vocabulary shortlist (model.shortlist)
    manifest.json      SHA-256 of every other file

Loading checks the format version and every checksum before it trusts a byte.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import ModelConfig
from model.errors import BundleError, UnknownFormatVersion
from model.seq2seq import Seq2Seq
from model.shortlist import Shortlist
from model.tokenizer import Tokenizer

FORMAT_VERSION = 1
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CONFIG, WEIGHTS, METADATA, MANIFEST, SHORTLIST = (
    "config.json",
    "model.safetensors",
    "metadata.json",
    "manifest.json",
    "shortlist.safetensors",
)


@dataclass
class Bundle:
    """A verified bundle in memory: what it takes to build the model and its tokenizer."""

    path: Path
    config: ModelConfig
    tokenizer: Tokenizer
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    checksum: str = ""  # SHA-256 of manifest.json: one id for the whole bundle
    shortlist: Shortlist | None = None

    @property
    def dtype(self) -> str:
        """The precision the weights are stored in."""
        stored = next(iter(self.state_dict.values())).dtype
        return next(name for name, dtype in DTYPES.items() if dtype == stored)

    def build_model(self) -> Seq2Seq:
        """A float32 Seq2Seq with the bundle's weights (fp16/bf16 weights are upcast)."""
        model = Seq2Seq(self.config)
        expected = set(model.state_dict())
        tied = expected - _unique_names(model)
        missing = expected - set(self.state_dict) - tied
        unexpected = set(self.state_dict) - expected
        if missing or unexpected:
            raise BundleError(
                self.path / WEIGHTS,
                f"weights do not fit config.json: missing {sorted(missing)}, "
                f"unexpected {sorted(unexpected)}",
            )
        self._check_shapes(model)
        model.load_state_dict(self.state_dict, strict=False)
        return model

    def _check_shapes(self, model: Seq2Seq) -> None:
        """One line for all shape mismatches (load_state_dict's error has a line per tensor)."""
        wanted = model.state_dict()
        wrong = [
            n
            for n in wanted
            if n in self.state_dict and self.state_dict[n].shape != wanted[n].shape
        ]
        if wrong:
            first = wrong[0]
            stored, needed = list(self.state_dict[first].shape), list(wanted[first].shape)
            count = f"{len(wrong)} tensor{'s' if len(wrong) > 1 else ''}"
            raise BundleError(
                self.path / WEIGHTS,
                f"wrong tensor shape in {count}, first {first}: {stored} in the weights, "
                f"{needed} by {CONFIG}; {CONFIG} and the weights disagree "
                f"(use the {CONFIG} exported with them)",
            )


def _unique_names(model: torch.nn.Module) -> set[str]:
    """State-dict names without the aliases of tied weights (safetensors refuses shared memory)."""
    return {name for name, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("lstm-nmt", "torch", "sentencepiece", "safetensors", "sacrebleu"):
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def save_bundle(
    out_dir: str | Path,
    model: Seq2Seq,
    tokenizer: Tokenizer,
    metadata: dict[str, Any] | None = None,
    dtype: str = "fp32",
    shortlist: Shortlist | None = None,
) -> Path:
    """Write a bundle to ``out_dir``, atomically: it appears whole or not at all. An existing
    ``out_dir`` is replaced only if it is a bundle (or empty): anything else is refused."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out = Path(out_dir).resolve()  # "." has no name to make a sibling from
    check_destination(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_files(tmp, model, tokenizer, metadata, dtype, shortlist)
        _replace(out, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    return out


def check_destination(out: Path) -> None:
    """Refuse an ``out`` that a bundle may not replace: a file, or a directory of other things
    (an export to a run directory or to "." deleted them)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; the bundle needs a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ValueError(
            f"{out} exists and is not a model bundle (no {MANIFEST}); a bundle replaces only "
            "an older bundle or an empty directory: choose another output directory"
        )


def _replace(out: Path, tmp: Path) -> None:
    """Put ``tmp`` at ``out``, the older bundle there moved aside first and removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        out.rename(old / out.name)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


def _write_files(
    tmp: Path,
    model: Seq2Seq,
    tokenizer: Tokenizer,
    metadata: dict[str, Any] | None,
    dtype: str,
    shortlist: Shortlist | None,
) -> None:
    """Every file of the bundle, the manifest last, readable by any user."""
    names = ["spm.model"] if tokenizer.joint else ["spm.src.model", "spm.tgt.model"]
    for src, name in zip(tokenizer.files, names, strict=True):
        shutil.copyfile(src, tmp / name)
    unique = _unique_names(model)
    tensors = {
        k: v.detach().to("cpu", DTYPES[dtype]).contiguous()
        for k, v in model.state_dict().items()
        if k in unique
    }
    save_file(tensors, str(tmp / WEIGHTS))
    if shortlist is not None:
        save_file(shortlist.to_tensors(), str(tmp / SHORTLIST))
    config = {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "tokenizer": names,
        "dtype": dtype,
    }
    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions()}
    meta.update(metadata or {})
    _write_json(tmp / CONFIG, config)
    _write_json(tmp / METADATA, meta)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
    _write_json(tmp / MANIFEST, {"format_version": FORMAT_VERSION, "sha256": files})
    # mkdtemp makes the directory 0700 and safetensors writes 0600: a service running as
    # another user (the container's) could not read the bundle. It holds no secrets.
    tmp.chmod(0o755)
    for file in tmp.iterdir():
        file.chmod(0o644)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(path, "file is missing; is this a model bundle directory?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(path, f"not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise BundleError(path, "expected a JSON object")
    return data


def _check_version(path: Path, data: dict[str, Any]) -> None:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise UnknownFormatVersion(
            path,
            f"format_version {version!r} is not supported; this lstm-nmt reads {FORMAT_VERSION}",
        )


def model_id(metadata: dict[str, Any], path: Path) -> str:
    """A bundle's id: its metadata's ``model_id``, else its directory's name."""
    return str(metadata.get("model_id") or Path(path).name)


def read_model_id(path: Path) -> str:
    """``model_id`` of the bundle at ``path``, from its metadata alone (no weights read)."""
    return model_id(_read_json(Path(path) / METADATA), path)


def verify_manifest(path: Path) -> str:
    """Check every file listed in manifest.json; return the manifest's own SHA-256."""
    manifest = _read_json(path / MANIFEST)
    _check_version(path / MANIFEST, manifest)
    listed = manifest.get("sha256")
    if not isinstance(listed, dict) or not listed:
        raise BundleError(path / MANIFEST, "has no 'sha256' table of files")
    for name, expected in sorted(listed.items()):
        file = path / name
        if not file.is_file():
            raise BundleError(file, "file is missing (listed in manifest.json)")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(
                file, f"corrupt: SHA-256 is {actual[:12]}..., manifest says {expected[:12]}..."
            )
    for required in (CONFIG, WEIGHTS, METADATA):
        if required not in listed:
            raise BundleError(path / required, "is not listed in manifest.json")
    if (path / SHORTLIST).is_file() and SHORTLIST not in listed:
        raise BundleError(path / SHORTLIST, "is not listed in manifest.json")
    return sha256_file(path / MANIFEST)


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle directory; every failure names the file and the problem."""
    root = Path(path)
    if not root.exists():
        raise BundleError(root, "model bundle directory does not exist")
    if not root.is_dir():
        raise BundleError(
            root, f"is a file, not a model bundle directory (one holding {CONFIG} and {WEIGHTS})"
        )
    config_data = _read_json(root / CONFIG)
    _check_version(root / CONFIG, config_data)
    checksum = verify_manifest(root)
    try:
        config = ModelConfig.from_dict(config_data["model"])
        spm_files = [root / name for name in config_data["tokenizer"]]
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(root / CONFIG, f"invalid model configuration: {err}") from err
    tokenizer = Tokenizer(*spm_files)
    sizes = (tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    if sizes != (config.src_vocab_size, config.tgt_vocab_size):
        raise BundleError(spm_files[0], f"vocabulary sizes {sizes} do not match config.json")
    try:
        state_dict = load_file(str(root / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise BundleError(root / WEIGHTS, f"unreadable safetensors file ({err})") from err
    shortlist = None
    if (root / SHORTLIST).is_file():  # verify_manifest checked its SHA-256
        try:
            shortlist = Shortlist.from_tensors(
                load_file(str(root / SHORTLIST)), config.src_vocab_size, config.tgt_vocab_size
            )
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise BundleError(root / SHORTLIST, f"invalid shortlist ({err})") from err
    return Bundle(
        root, config, tokenizer, state_dict, _read_json(root / METADATA), checksum, shortlist
    )
