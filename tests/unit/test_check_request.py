"""Pure parts of the check exchange: LocalIDs, Subjects, durations, request bodies, reply kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.check.request import (
    SAFE_TEXT,
    ReplyKind,
    classify_reply,
    dat_bytes,
    default_subject,
    format_duration,
    new_local_id,
    notification_summary,
    parse_duration,
    require_safe,
)
from optout.dat import read_dat_bytes
from optout.errors import UsageError
from optout.nhs_number import synthetic

REJECTION = b"The file contains one or more invalid NHS Numbers."


@pytest.mark.parametrize("mode", ["one-off", "cache"])
def test_local_id_and_subject_are_safe(mode: str) -> None:
    # facts: Subject and LocalID only letters, digits, '-' and '_' (a ':' means no reply ever comes)
    lid = new_local_id(mode, now=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), token="abc123")
    assert lid == f"optout-{mode.replace('-', '')}-20260301T093000Z-abc123"
    assert SAFE_TEXT.fullmatch(lid) and SAFE_TEXT.fullmatch(default_subject(mode))


def test_local_ids_are_unique() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert len({new_local_id("one-off", now=now) for _ in range(200)}) == 200


@pytest.mark.parametrize("text", ["a:b", "has space", "", "tab\t", "é", "a/b", "x" * 65])
def test_unsafe_local_ids_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        require_safe(text, what="LocalID")


@given(st.text(min_size=1, max_size=40))
def test_require_safe_accepts_exactly_the_safe_alphabet(text: str) -> None:
    ok = all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in text)
    if ok:
        assert require_safe(text, what="Subject") == text
    else:
        with pytest.raises(UsageError):
            require_safe(text, what="Subject")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("45s", 45),
        ("1d", 86400),
        ("300", 300),
        ("0", 0),
        ("1.5h", 5400),
        ("2 h", 7200),
        ("1w", 604800),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "2x", "two hours", "-1h", "1h-"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1, minutes=2, seconds=3)) == "1h2m3s"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(days=2, hours=1)) == "2d1h"


def test_dat_bytes_is_the_service_format_and_round_trips() -> None:
    nums = np.sort(synthetic(50, seed=3))
    body = dat_bytes(nums)
    assert body.count(b"\n") == 50 and b"\r" not in body  # LF line ends
    assert all(len(line) == 11 and line.endswith(b",") for line in body.splitlines())
    assert np.array_equal(read_dat_bytes(body, source_name="x"), nums)


def test_dat_bytes_keeps_chi_leading_zero() -> None:
    # facts: "Scottish CHI numbers keep their leading zero"
    assert dat_bytes(np.array([101_000_000], dtype=np.int64)) == b"0101000000,\n"


def test_empty_request_body() -> None:
    assert dat_bytes(np.empty(0, dtype=np.int64)) == b""


@pytest.mark.parametrize(
    ("message_type", "subject", "body", "kind"),
    [
        ("REPORT", "NDR", b"", ReplyKind.REPORT),
        ("REPORT", None, b"9434765919,\n", ReplyKind.REPORT),
        ("DATA", "anything", REJECTION, ReplyKind.REJECTION),
        ("DATA", None, REJECTION + b"\r\n", ReplyKind.REJECTION),
        ("DATA", "SUCCESS", b'{"status": "SUCCESS"}', ReplyKind.NOTIFICATION),
        ("DATA", "success", b"", ReplyKind.NOTIFICATION),
        ("DATA", None, b'{"x": 1}', ReplyKind.NOTIFICATION),
        ("DATA", "optout-one-off-check", b"9434765919,\n", ReplyKind.CLEANED_LIST),
        ("DATA", None, b"", ReplyKind.CLEANED_LIST),  # everyone opted out: an empty list
        (None, None, b"9434765919,\r\n", ReplyKind.CLEANED_LIST),
    ],
)
def test_classify_reply(message_type: str | None, subject: str | None, body: bytes, kind: str) -> None:
    assert classify_reply(message_type=message_type, subject=subject, body=body).kind == kind


def test_notification_summary_keeps_counts_not_identifiers() -> None:
    doc = b'{"status": "SUCCESS", "count": 12, "nhs": "9434765919", "big": 9434765919, "nested": {"a": 1}}'
    assert notification_summary(doc) == {"status": "SUCCESS", "count": 12}
    assert notification_summary(b"not json") == {"unparsed": True, "bytes": 8}
