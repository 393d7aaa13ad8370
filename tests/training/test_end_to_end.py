"""The whole pipeline on the copy task: SentencePiece -> train -> export -> Translator -> evaluate.

Everything goes through the ``nmt`` command (in-process), as a user would run it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from run_helpers import write_yaml
from safetensors.torch import load_file

from model import DecodeOptions, Translator
from model.cli import main as nmt
from training import checkpoint

BLEU_SIGNATURE = r"nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:\S+"
CHRF_SIGNATURE = r"nrefs:1\|case:mixed\|eff:yes\|nc:6\|nw:0\|space:no\|version:\S+"


@pytest.mark.slow
def test_train_export_translate_evaluate(
    make_raw: Callable[..., dict[str, Any]],
    copy_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop = {"max_steps": 30, "valid_every": 10, "save_every": 10, "keep_last": 3}
    config = write_yaml(make_raw(loop=loop), tmp_path / "run.yaml")
    run = tmp_path / "run"
    assert nmt(["train", str(config)]) == 0
    ckpts = [p.name for p in checkpoint.step_checkpoints(run / "checkpoints")]
    assert ckpts == ["step_10.pt", "step_20.pt", "step_30.pt"]
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "spm.model").is_file()
    valid_lines = [
        json.loads(line)
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"valid"' in line
    ]
    assert [v["step"] for v in valid_lines] == [10, 20, 30]
    assert all(re.fullmatch(BLEU_SIGNATURE, v["bleu_signature"]) for v in valid_lines)

    fp32, fp16, averaged = tmp_path / "fp32", tmp_path / "fp16", tmp_path / "avg"
    assert nmt(["export", str(run), "--out", str(fp32)]) == 0
    assert nmt(["export", str(run), "--out", str(fp16), "--dtype", "fp16", "--no-shortlist"]) == 0
    assert (
        nmt(["export", str(run), "--out", str(averaged), "--average-last", "2", "--no-eval"]) == 0
    )

    # Metadata: sacreBLEU metrics with signatures for valid and test, steps and hardware.
    for bundle in (fp32, fp16):
        meta = json.loads((bundle / "metadata.json").read_text())
        assert meta["checkpoint"] == "best.pt"
        assert (meta["source_lang"], meta["target_lang"]) == ("xx", "xx")
        assert meta["training"]["steps"] == meta["training"]["best_step"] in (10, 20, 30)
        assert meta["training"]["target_tokens"] > 0
        machine = meta["training"]["hardware"]
        assert machine["cpu"] and machine["cpu_count"]
        # Recorded by the training run itself, not guessed by the exporting process.
        assert (machine["device"], machine["processes"]) == ("cpu", 1)
        assert "recorded" not in machine
        for split in ("valid", "test"):
            for beam in ("beam1", "beam5"):
                scores = meta["metrics"][split][beam]
                assert 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
                assert re.fullmatch(BLEU_SIGNATURE, scores["bleu_signature"])
                assert re.fullmatch(CHRF_SIGNATURE, scores["chrf_signature"])
                assert scores["sentences"] == 10
    # A vocabulary shortlist from the training data unless --no-shortlist.
    assert (fp32 / "shortlist.safetensors").is_file() and (
        averaged / "shortlist.safetensors"
    ).is_file()
    assert json.loads((fp32 / "metadata.json").read_text())["shortlist"]["per_source"] == 20
    assert not (fp16 / "shortlist.safetensors").exists()
    assert "shortlist" not in json.loads((fp16 / "metadata.json").read_text())
    assert json.loads((fp16 / "config.json").read_text())["dtype"] == "fp16"
    assert {t.dtype for t in load_file(str(fp16 / "model.safetensors")).values()} == {torch.float16}

    # --average-last 2: the mean of the last two step checkpoints.
    meta = json.loads((averaged / "metadata.json").read_text())
    assert meta["checkpoint"] == "average of step_20.pt, step_30.pt"
    assert meta["training"]["steps"] == 30 and meta["metrics"] == {}
    want = checkpoint.average_weights(
        [run / "checkpoints" / "step_20.pt", run / "checkpoints" / "step_30.pt"]
    )
    for name, tensor in load_file(str(averaged / "model.safetensors")).items():
        torch.testing.assert_close(tensor, want[name])

    # Every bundle loads and translates.
    sentences = (copy_data / "test.src").read_text().splitlines()[:3]
    for bundle in (fp32, fp16, averaged):
        results = Translator.from_dir(bundle).translate(sentences, DecodeOptions(beam_size=2))
        assert [r.error for r in results] == [None] * 3
        assert all(isinstance(r.text, str) for r in results)

    # nmt evaluate prints BLEU and chrF with their signatures and writes the hypotheses.
    capsys.readouterr()
    hyp = tmp_path / "test.hyp"
    args = ["--src", str(copy_data / "test.src"), "--ref", str(copy_data / "test.tgt")]
    args += ["--quantize", "none"]  # export measures the float model
    assert nmt(["evaluate", "--model", str(fp32), *args, "--beam", "1", "--hyp", str(hyp)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    bleu = re.fullmatch(rf"BLEU (\d+\.\d\d)  {BLEU_SIGNATURE}", out[0])
    assert bleu is not None and re.fullmatch(rf"chrF \d+\.\d\d  {CHRF_SIGNATURE}", out[1])
    assert len(hyp.read_text().splitlines()) == 10
    # The same greedy decoding as the export's test metrics, so the same score.
    meta = json.loads((fp32 / "metadata.json").read_text())
    assert float(bleu.group(1)) == pytest.approx(meta["metrics"]["test"]["beam1"]["bleu"])
