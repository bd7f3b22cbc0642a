"""The temporary cache at rest: AES-256-GCM, authenticated metadata, keys, 7-day expiry (001 §8.4).

Written and read without MESH (the refresh exchange is tested in tests/integration).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as settings_h
from hypothesis import strategies as st

from optout import audit
from optout.check import cache
from optout.config import Settings
from optout.errors import IntegrityError, OutputError, PolicyRefusal, UsageError
from optout.nhs_number import synthetic
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NUMBERS = np.sort(synthetic(1000, seed=5))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    s = Settings(home=tmp_path / "home", actor="tester")
    cache.keygen(s.home / "cache.key")
    return s


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.db_url)


def _write(
    settings: Settings, *, refreshed_at: datetime = T0, numbers: np.ndarray = NUMBERS
) -> cache.CacheMeta:
    return cache.write_cache(
        numbers,
        refreshed_at=refreshed_at,
        cohort_sha256="c" * 64,
        cohort_size=1200,
        local_id="optout-cache-20260302T090000Z-abcd",
        request_message_id="MSG1",
        reply_message_ids=["MSG2", "MSG3"],
        settings=settings,
        now=refreshed_at + timedelta(minutes=40),
    )


def test_round_trip(settings: Settings) -> None:
    meta = _write(settings)
    numbers, back, sha = cache.read_cache(settings)
    assert np.array_equal(numbers, NUMBERS)
    assert back == meta and back.returned_count == 1000 and back.cohort_size == 1200
    assert len(sha) == 64


def test_file_holds_no_number_in_clear(settings: Settings) -> None:
    _write(settings)
    blob = cache.cache_file(settings).read_bytes()
    for n in NUMBERS[:50]:
        assert str(int(n)).encode() not in blob
        assert int(n).to_bytes(8, "little") not in blob
    assert (os.stat(cache.cache_file(settings).parent).st_mode & 0o077) == 0


@pytest.mark.parametrize(
    ("age", "allowed"),
    [
        (timedelta(0), True),
        (timedelta(days=6, hours=23, minutes=59), True),
        (timedelta(days=7), False),  # 001 §8.4: "updated at least every 7 days"
        (timedelta(days=7, seconds=1), False),
        (timedelta(days=30), False),
    ],
)
def test_expiry_at_7_days(settings: Settings, store: Store, age: timedelta, allowed: bool) -> None:
    _write(settings)
    if allowed:
        al = cache.load_allow_list(settings, now=T0 + age, store=store)
        assert al.source == "cache" and al.checked_at == T0
        # 001 §8.4: "the organisation has 13 days to process and disclose the data"
        assert al.deadline == T0 + timedelta(days=13)
        assert np.array_equal(al.numbers, NUMBERS)
    else:
        with pytest.raises(PolicyRefusal) as exc:
            cache.load_allow_list(settings, now=T0 + age, store=store)
        text = exc.value.render()
        assert "expired at 2026-03-09T09:00:00Z" in text and "optout cache refresh" in text
        assert exc.value.exit_code == 4


def test_cache_from_the_future_is_refused(settings: Settings, store: Store) -> None:
    _write(settings, refreshed_at=T0 + timedelta(hours=2))
    with pytest.raises(PolicyRefusal, match="future"):
        cache.load_allow_list(settings, now=T0, store=store)


def test_every_read_is_audited_without_numbers(settings: Settings, store: Store) -> None:
    _write(settings)
    cache.load_allow_list(settings, now=T0 + timedelta(days=1), store=store)
    entries = [e for e in audit.entries(store) if e.action == "cache.read"]
    assert len(entries) == 1
    d = entries[0].details_dict
    assert d["returned_count"] == 1000 and d["refreshed_at"] == "2026-03-02T09:00:00Z"
    assert d["deadline"] == "2026-03-15T09:00:00Z"
    assert not any(str(int(n)) in entries[0].details for n in NUMBERS)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["magic", "header", "nonce", "ciphertext", "tag", "truncated", "appended"])
def test_tamper_is_detected(settings: Settings, store: Store, where: str) -> None:
    _write(settings)
    path = cache.cache_file(settings)
    data = path.read_bytes()
    hstart = len(cache.MAGIC) + 4
    hlen = int.from_bytes(data[len(cache.MAGIC) : hstart], "big")
    if where == "magic":
        _flip(path, 2)
    elif where == "header":
        header = data[hstart : hstart + hlen]
        changed = header.replace(b'"returned_count":1000', b'"returned_count":1001')
        if changed == header:  # pragma: no cover
            pytest.fail("header layout changed")
        path.write_bytes(data[:hstart] + changed + data[hstart + hlen :])
    elif where == "nonce":
        _flip(path, hstart + hlen + 3)
    elif where == "ciphertext":
        _flip(path, hstart + hlen + 12 + 100)
    elif where == "tag":
        _flip(path, len(data) - 1)
    elif where == "truncated":
        path.write_bytes(data[:-20])
    else:
        path.write_bytes(data + b"\x00" * 8)
    with pytest.raises(IntegrityError) as exc:
        cache.load_allow_list(settings, now=T0, store=store)
    assert exc.value.exit_code == 8 and "optout cache destroy" in exc.value.render()
    assert cache.status(settings, now=T0).state == "unusable"


def test_changing_refreshed_at_in_the_header_is_detected(settings: Settings, store: Store) -> None:
    # making an old cache look fresh must not work: the metadata is authenticated
    _write(settings)
    path = cache.cache_file(settings)
    data = path.read_bytes()
    forged = data.replace(b"2026-03-02T09:00:00Z", b"2026-03-12T09:00:00Z", 1)
    assert forged != data
    path.write_bytes(forged)
    with pytest.raises(IntegrityError):
        cache.load_allow_list(settings, now=T0 + timedelta(days=10), store=store)


def test_wrong_key(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(settings)
    monkeypatch.setenv("OPTOUT_CACHE_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(IntegrityError, match="different key") as exc:
        cache.load_allow_list(settings, now=T0, store=store)
    assert exc.value.exit_code == 8


def test_env_key_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    monkeypatch.setenv("OPTOUT_CACHE_KEY", base64.b64encode(key).decode())
    s = Settings(home=tmp_path, actor="t")
    assert cache.load_key(s) == key


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_bad_env_key(tmp_path: Path, value: str) -> None:
    s = Settings(home=tmp_path, actor="t")
    with pytest.raises(UsageError, match="32 bytes"):
        cache.load_key(s, env={"OPTOUT_CACHE_KEY": value} if value else {"OPTOUT_CACHE_KEY": " "})


def test_no_key_says_how_to_make_one(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, actor="t")
    with pytest.raises(UsageError) as exc:
        cache.load_key(s, env={})
    assert "optout cache keygen" in (exc.value.hint or "")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o666])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = cache.keygen(tmp_path / "k.key")
    os.chmod(key_file, mode)
    s = Settings(home=tmp_path, actor="t", cache_key_file=key_file)
    with pytest.raises(UsageError) as exc:
        cache.load_key(s, env={})
    assert f"chmod 600 {key_file}" in (exc.value.hint or "")


def test_keygen_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = cache.keygen(tmp_path / "sub" / "cache.key")
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert len(base64.b64decode(path.read_bytes().strip())) == 32
    with pytest.raises(OutputError):
        cache.keygen(path)


def test_status_shows_times_and_counts_never_members(settings: Settings) -> None:
    assert cache.status(settings, now=T0).state == "absent"
    _write(settings)
    st = cache.status(settings, now=T0 + timedelta(days=2))
    d = st.to_dict()
    assert st.verified and d["state"] == "fresh" and d["age_hours"] == 48.0
    assert d["refresh_due"] == "2026-03-08T09:00:00Z" and d["expires_at"] == "2026-03-09T09:00:00Z"
    assert d["disclose_by_if_used_now"] == "2026-03-15T09:00:00Z"
    assert d["returned_count"] == 1000 and d["cohort_size"] == 1200
    assert not any(str(int(n)) in json.dumps(d) for n in NUMBERS)
    assert cache.status(settings, now=T0 + timedelta(days=6, hours=1)).state == "refresh-due"
    assert cache.status(settings, now=T0 + timedelta(days=7)).state == "expired"


def test_status_without_key_is_unverified(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(settings)
    (settings.home / "cache.key").unlink()
    st = cache.status(settings, now=T0)
    assert st.exists and not st.verified and st.meta is not None and "not verified" in (st.problem or "")


def test_destroy(settings: Settings, store: Store) -> None:
    assert cache.destroy(settings, store=store) is False
    _write(settings)
    assert cache.destroy(settings, store=store) is True
    assert not cache.cache_file(settings).exists()
    assert [e.action for e in audit.entries(store)] == ["cache.destroyed"]
    with pytest.raises(PolicyRefusal, match="no temporary cache"):
        cache.load_allow_list(settings, now=T0, store=store)


def test_write_is_atomic_no_temp_left(settings: Settings) -> None:
    _write(settings)
    _write(settings, refreshed_at=T0 + timedelta(days=1))
    assert [p.name for p in cache.cache_file(settings).parent.iterdir()] == [cache.CACHE_FILE]


@settings_h(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=9_999_999_999), max_size=300, unique=True),
    flip=st.integers(min_value=0),
)
def test_any_list_round_trips_and_any_flipped_bit_is_caught(
    tmp_path_factory: pytest.TempPathFactory, values: list[int], flip: int
) -> None:
    home = tmp_path_factory.mktemp("h")
    s = Settings(home=home, actor="t")
    key = os.urandom(32)
    numbers = np.array(sorted(values), dtype=np.int64)
    cache.write_cache(
        numbers,
        refreshed_at=T0,
        cohort_sha256="0" * 64,
        cohort_size=len(values) + 1,
        local_id="x",
        request_message_id=None,
        reply_message_ids=[],
        settings=s,
        key=key,
    )
    back, meta, _ = cache.read_cache(s, key=key)
    assert np.array_equal(back, numbers) and meta.returned_count == len(values)
    path = cache.cache_file(s)
    data = bytearray(path.read_bytes())
    data[flip % len(data)] ^= 1 << (flip % 8)
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        cache.read_cache(s, key=key)
