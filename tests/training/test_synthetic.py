"""The synthetic copy task writes what configs/tiny_copy.yaml reads."""

from pathlib import Path

from training.config import load_config
from training.corpus import read_pairs
from training.synthetic import write_copy_task

REPO = Path(__file__).resolve().parents[2]


def test_copy_task_files_match_the_tiny_config(tmp_path: Path) -> None:
    written = write_copy_task(tmp_path, sizes={"train": 30, "valid": 5, "test": 5}, seed=3)
    cfg = load_config(REPO / "configs" / "tiny_copy.yaml")
    for split, (src, tgt) in written.items():
        assert Path(getattr(cfg.data, f"{split}_src")).name == src.name
        assert Path(getattr(cfg.data, f"{split}_tgt")).name == tgt.name
    train = read_pairs(*written["train"])
    assert len(train) == 30
    assert all(s == t and 2 <= len(s.split()) <= 8 for s, t in train)
    assert read_pairs(*written["valid"]) != read_pairs(*written["test"])


def test_reverse_task_and_repeatability(tmp_path: Path) -> None:
    a = write_copy_task(tmp_path / "a", sizes={"train": 20}, seed=1, reverse=True)
    b = write_copy_task(tmp_path / "b", sizes={"train": 20}, seed=1, reverse=True)
    pairs = read_pairs(*a["train"])
    assert pairs == read_pairs(*b["train"])
    assert all(t.split() == s.split()[::-1] for s, t in pairs)
