"""Inputs hashed early (while the command line loads its libraries) count only when unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from optout import digest


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "_EARLY", digest.Early(lambda p: digest.sha256_file(p), "t"))


def test_an_unchanged_file_hashed_early_gives_its_sha256(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes(b"x" * 3_000_000)
    digest.hash_early([f, tmp_path / "missing.csv", "s3a://bucket/t.parquet"])
    assert digest.early_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest() == digest.sha256_file(f)
    assert digest.early_sha256(tmp_path / "missing.csv") is None
    assert digest.early_sha256(tmp_path / "never-asked.csv") is None


@pytest.mark.parametrize("change", ["content-and-size", "time", "replaced"])
def test_a_file_changed_after_it_was_hashed_early_is_not_taken(tmp_path: Path, change: str) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes(b"one\n")
    digest.hash_early([f])
    assert digest.early_sha256(f) is not None
    if change == "content-and-size":
        f.write_bytes(b"two two\n")
    elif change == "time":
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    else:  # same size and time, another file (a new inode) renamed over it
        st = f.stat()
        g = tmp_path / "b.csv"
        g.write_bytes(b"two\n")
        os.utime(g, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(g, f)
    assert digest.early_sha256(f) is None


def test_a_file_that_changes_while_it_is_read_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "a.csv"
    f.write_bytes(b"one\n")
    real = digest.sha256_file

    def hashed_then_changed(p: Path) -> str:
        out = real(p)
        p.write_bytes(b"changed while read\n")
        return out

    monkeypatch.setattr(digest, "sha256_file", hashed_then_changed)
    digest.hash_early([f])
    assert digest.early_sha256(f) is None
