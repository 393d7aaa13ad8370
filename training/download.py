"""Fetch Multi30k task-1 (English-German, raw and cased), checksum-verified.

The files come from the dataset's public repository (github.com/multi30k/dataset,
``data/task1/raw/``) or from a local directory that holds the same files. Either way each file is
written to a temporary name beside its destination, verified against :data:`MULTI30K_SHA256`,
and only then renamed, so a failed or tampered fetch never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
URL_ENV_VAR = "NMT_MULTI30K_URL"

# sha256sum of the files in shared/data/multi30k/, which are copies of the repository's files.
MULTI30K_SHA256 = {
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
}

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A dataset file could not be fetched or failed verification."""


class ChecksumError(DownloadError):
    """A fetched file's SHA-256 differs from the expected one."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_verified(reader: BinaryIO, dest: Path, expected: str, origin: str) -> None:
    """Stream ``reader`` to ``dest`` via a temporary file, renaming only if the hash matches."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {dest.name} from {origin}: "
                f"expected sha256 {expected}, got {actual}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a dataset file is for everyone
        os.replace(tmp, dest)  # atomic on one filesystem: dest is either absent or complete
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_one(name: str, dest: Path, source_dir: Path | None, base_url: str) -> None:
    expected = MULTI30K_SHA256[name]
    if source_dir is not None:
        origin = str(source_dir / name)
        try:
            with (source_dir / name).open("rb") as reader:
                _copy_verified(reader, dest, expected, origin)
        except OSError as err:
            raise DownloadError(f"cannot copy {origin}: {err.strerror or err}") from err
        return
    origin = f"{base_url.rstrip('/')}/{name}"
    try:
        with urllib.request.urlopen(origin, timeout=60) as reader:
            _copy_verified(reader, dest, expected, origin)
    except OSError as err:  # URLError and HTTPError are OSErrors; ChecksumError is not
        raise DownloadError(f"cannot download {origin}: {err}") from err


def fetch_multi30k(
    dest: str | Path, source_dir: str | Path | None = None, base_url: str | None = None
) -> list[Path]:
    """Put the six Multi30k files (train, val, test_2016_flickr × en, de; gzipped) in ``dest``.

    Files already in ``dest`` with the right checksum are kept, so re-running is cheap; a file
    with the wrong checksum is deleted and fetched again.

    Args:
        dest: directory to write to (created if needed). Keep it outside the repository.
        source_dir: copy from this local directory instead of downloading.
        base_url: download from ``<base_url>/<file>``; ``file://`` URLs work too. Defaults to
            the ``NMT_MULTI30K_URL`` environment variable, then :data:`DEFAULT_BASE_URL`.

    Returns:
        The paths of the six files, in :data:`MULTI30K_SHA256` order.

    Raises:
        DownloadError: a file is missing at the source or cannot be downloaded.
        ChecksumError: a file's SHA-256 is not the expected one; nothing is left for that file.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    url = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL
    source = Path(source_dir) if source_dir is not None else None
    paths = []
    for name, expected in MULTI30K_SHA256.items():
        path = dest / name
        if path.is_file() and sha256_file(path) == expected:
            logger.info("multi30k file=%s status=present", path)
        else:
            if path.exists():
                # Remove it first so that a failed re-fetch cannot leave the bad copy behind.
                logger.warning("multi30k file=%s status=bad_checksum action=refetch", path)
                path.unlink()
            _fetch_one(name, path, source, url)
            logger.info("multi30k file=%s status=fetched from=%s", path, source or url)
        paths.append(path)
    return paths
