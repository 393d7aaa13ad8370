"""Multi30k fetching from a local directory and a file:// URL, with checksum verification.

The tests use small fake files and patch the checksum table, so they need neither the real
corpus nor the network.
"""

import gzip
import hashlib
from pathlib import Path

import pytest

from training import download
from training.download import ChecksumError, DownloadError, fetch_multi30k


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of six tiny .gz files, with the checksum table pointing at them."""
    src = tmp_path / "source"
    src.mkdir()
    table = {}
    for name in download.MULTI30K_SHA256:
        data = gzip.compress(f"{name} line\n".encode(), mtime=0)
        (src / name).write_bytes(data)
        table[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(download, "MULTI30K_SHA256", table)
    return src


def test_table_lists_the_six_files() -> None:
    names = {
        f"{split}.{lang}.gz"
        for split in ("train", "val", "test_2016_flickr")
        for lang in ["en", "de"]
    }
    assert set(download.MULTI30K_SHA256) == names
    assert all(len(h) == 64 for h in download.MULTI30K_SHA256.values())


def test_copies_from_local_dir_and_verifies(fake_source: Path, tmp_path: Path) -> None:
    paths = fetch_multi30k(tmp_path / "dest", source_dir=fake_source)
    assert [p.name for p in paths] == list(download.MULTI30K_SHA256)
    for p in paths:
        assert p.read_bytes() == (fake_source / p.name).read_bytes()
    assert sorted(x.name for x in (tmp_path / "dest").iterdir()) == sorted(download.MULTI30K_SHA256)


def test_downloads_from_file_url(fake_source: Path, tmp_path: Path) -> None:
    paths = fetch_multi30k(tmp_path / "dest", base_url=fake_source.as_uri() + "/")
    assert all(p.is_file() for p in paths)


def test_env_var_sets_the_url(
    fake_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(download.URL_ENV_VAR, fake_source.as_uri())
    assert len(fetch_multi30k(tmp_path / "dest")) == 6


def test_wrong_checksum_is_rejected_and_leaves_nothing(fake_source: Path, tmp_path: Path) -> None:
    (fake_source / "val.en.gz").write_bytes(b"tampered")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError) as err:
        fetch_multi30k(dest, base_url=fake_source.as_uri())
    msg = str(err.value)
    assert "val.en.gz" in msg
    assert download.MULTI30K_SHA256["val.en.gz"] in msg
    assert hashlib.sha256(b"tampered").hexdigest() in msg
    # Files before it in the table were fetched; no partial or temporary file is left for it.
    assert sorted(x.name for x in dest.iterdir()) == ["train.de.gz", "train.en.gz"]


def test_wrong_checksum_from_local_dir(fake_source: Path, tmp_path: Path) -> None:
    (fake_source / "train.en.gz").write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="train.en.gz"):
        fetch_multi30k(tmp_path / "dest", source_dir=fake_source)
    assert list((tmp_path / "dest").iterdir()) == []


def test_bad_existing_file_is_replaced(fake_source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "val.de.gz").write_bytes(b"stale")
    fetch_multi30k(dest, source_dir=fake_source)
    assert (dest / "val.de.gz").read_bytes() == (fake_source / "val.de.gz").read_bytes()


def test_missing_source_file(fake_source: Path, tmp_path: Path) -> None:
    (fake_source / "test_2016_flickr.de.gz").unlink()
    with pytest.raises(DownloadError, match="test_2016_flickr.de.gz"):
        fetch_multi30k(tmp_path / "d1", source_dir=fake_source)
    with pytest.raises(DownloadError, match="test_2016_flickr.de.gz"):
        fetch_multi30k(tmp_path / "d2", base_url=fake_source.as_uri())


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared/data/multi30k beside the checkout")
def test_table_matches_the_shared_copies() -> None:
    for name, expected in download.MULTI30K_SHA256.items():
        assert download.sha256_file(SHARED / name) == expected, name
