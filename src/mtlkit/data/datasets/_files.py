"""File helpers shared by the built-in datasets: checksums, verification, atomic download."""

from __future__ import annotations

import gzip
import hashlib
import urllib.request
from pathlib import Path

from mtlkit.errors import DataError


def sha256_file(path: Path, decompress: bool = False) -> str:
    """SHA-256 of a file's bytes (of its gzip-decompressed content with ``decompress``)."""
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, url: str) -> None:
    """Raise a DataError naming the file and where to get it if its SHA-256 differs."""
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: SHA-256 {actual[:12]}… does not match the published {expected[:12]}…; the "
            f"file may be truncated or altered. Download it again from "
            f"{url} (or pass verify: false to skip this check)"
        )


def fetch(url: str, path: Path) -> None:
    """Download ``url`` to ``path`` via a ``.part`` file, so a broken download leaves nothing."""
    if path.exists():
        return
    tmp = path.with_suffix(".part")
    urllib.request.urlretrieve(url, tmp)
    tmp.replace(path)
