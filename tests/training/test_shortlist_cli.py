"""``nmt shortlist``: add a shortlist to an existing bundle and measure the bundle again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from model import load_bundle
from model.cli import main as nmt
from tests.conftest import synthetic_sentences


def test_shortlist_command_rewrites_the_bundle_with_new_metrics(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    before = load_bundle(bundle)
    src, tgt = tmp_path / "train.xx", tmp_path / "train.yy"
    src.write_text("\n".join(synthetic_sentences(50, seed=1)) + "\n")
    tgt.write_text("\n".join(synthetic_sentences(50, seed=2)) + "\n")
    args = ["--train-src", str(src), "--train-tgt", str(tgt), "--per-source", "4"]
    evaluate = ["--eval", "valid", str(src), str(tgt)]
    assert nmt(["shortlist", "--model", str(bundle), *args, *evaluate]) == 0

    after = load_bundle(bundle)  # verifies every checksum, the new file included
    assert after.shortlist is not None and after.shortlist.by_source.size(1) == 4
    assert after.checksum != before.checksum
    for name, tensor in before.state_dict.items():
        assert torch.equal(after.state_dict[name], tensor)
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["shortlist"] == {
        "frequent": 100,
        "per_source": 4,
        "built_from": "train.xx + train.yy",
    }
    assert set(meta["metrics"]) == {"valid"}
    assert set(meta["metrics"]["valid"]) == {"beam1", "beam5"}
    assert meta["metrics"]["valid"]["beam1"]["sentences"] == 50
    assert meta["model_id"] == before.metadata["model_id"]
