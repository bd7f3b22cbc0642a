"""The reference service's register: latest choice stands (001 §8.3), answers from the published
snapshot only (001 §8.4), seeding, CSV import, and the request/reply file format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout import nhs_number
from optout.errors import InputError, UsageError
from optout.service import PUBLISH_EVERY, Register, format_dat, parse_request

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
A, B, C = (int(n) for n in nhs_number.synthetic(3, seed=11))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(tmp_path: Path, clock: Clock) -> Register:
    r = Register(tmp_path / "reg", clock=clock)
    yield r  # type: ignore[misc]
    r.close()


def kept(reg: Register, *numbers: int) -> set[int]:
    return set(reg.answer(np.asarray(numbers, dtype=np.int64)).tolist())


# (events as (person, opted_out, minutes after T0), who keeps being returned, clause)
LATEST_CHOICE_CASES = [
    ([("A", True, 0)], {"B"}, "001 §8.3: an opt-out removes the person"),
    ([("A", True, 0), ("A", False, 5)], {"A", "B"}, "001 §8.3: withdrawal re-includes"),
    (
        [("A", False, 5), ("A", True, 0)],
        {"A", "B"},
        "001 §8.3: the latest choice by time stands, not arrival",
    ),
    (
        [("A", True, 0), ("A", False, 5), ("A", True, 9)],
        {"B"},
        "001 §8.3: the current choice replaces previous",
    ),
    ([("A", False, 0)], {"A", "B"}, "a withdrawal without an opt-out changes nothing"),
    ([("A", True, 0), ("B", True, 1), ("B", False, 2)], {"B"}, "choices are per person"),
]


@pytest.mark.parametrize(("events", "returned", "clause"), LATEST_CHOICE_CASES)
def test_latest_choice_stands(
    reg: Register, clock: Clock, events: list[tuple[str, bool, int]], returned: set[str], clause: str
) -> None:
    who = {"A": A, "B": B}
    for person, opted_out, minutes in events:
        reg.record(who[person], opted_out, at=T0 + timedelta(minutes=minutes))
    clock.now = T0 + timedelta(hours=1)
    reg.publish()
    assert kept(reg, A, B) == {who[p] for p in returned}, clause


def test_answers_come_from_the_published_snapshot_not_live_events(reg: Register, clock: Clock) -> None:
    """001 §8.4: the service is updated every 24 hrs; an opt-out registered today applies from the next."""
    reg.publish()
    clock.now = T0 + timedelta(hours=2)
    reg.record(A, True)
    assert kept(reg, A, B) == {A, B}  # not yet published
    assert not reg.publication_due()
    clock.now = T0 + PUBLISH_EVERY
    assert reg.publication_due()
    reg.ensure_published()
    assert kept(reg, A, B) == {B}
    # withdrawal: again only from the next publication
    clock.now += timedelta(hours=1)
    reg.record(A, False)
    assert kept(reg, A, B) == {B}
    clock.now += PUBLISH_EVERY
    reg.ensure_published()
    assert kept(reg, A, B) == {A, B}


def test_future_dated_event_is_not_in_an_earlier_publication(reg: Register, clock: Clock) -> None:
    reg.record(A, True, at=T0 + timedelta(days=2))
    reg.publish()
    assert kept(reg, A) == {A}


def test_answer_before_any_publication_is_refused(reg: Register) -> None:
    with pytest.raises(UsageError, match="no published snapshot"):
        reg.answer(np.asarray([A]))


def test_answer_keeps_order_and_duplicates(reg: Register) -> None:
    reg.record(B, True)
    reg.publish()
    out = reg.answer(np.asarray([C, B, A, C], dtype=np.int64))
    assert out.tolist() == [C, A, C]


def test_a_publication_made_elsewhere_is_picked_up(tmp_path: Path, clock: Clock) -> None:
    """`optout service publish` in another process: the responder's register sees it."""
    with (
        Register(tmp_path / "r", clock=clock) as responder_side,
        Register(tmp_path / "r", clock=clock) as cli,
    ):
        cli.publish()
        assert kept(responder_side, A) == {A}
        cli.record(A, True)
        clock.now += timedelta(minutes=1)
        cli.publish()
        assert kept(responder_side, A) == set()


def test_seed_matches_the_synthetic_population(reg: Register) -> None:
    n = reg.seed(10_000, 0.054, seed=3)
    assert n == 540
    reg.publish()
    people = nhs_number.synthetic(10_000, seed=3)
    assert reg.answer(people).size == 10_000 - 540
    status = reg.status()
    assert (status.events, status.opted_out_now, status.snapshot.count) == (540, 540, 540)  # type: ignore[union-attr]


@pytest.mark.parametrize(("population", "rate"), [(0, 0.1), (10, -0.1), (10, 1.5)])
def test_seed_refuses_nonsense(reg: Register, population: int, rate: float) -> None:
    with pytest.raises(UsageError):
        reg.seed(population, rate)


def test_record_refuses_an_invalid_number(reg: Register) -> None:
    with pytest.raises(InputError) as info:
        reg.record(1234567890, True)
    assert "1234567890" not in info.value.render()


def test_import_csv(reg: Register, clock: Clock, tmp_path: Path) -> None:
    csv = tmp_path / "choices.csv"
    csv.write_text(
        "nhs_number,opted_out,at\n"
        f"{A},true,2026-03-01T08:00:00Z\n"
        f"{A},withdrawn,2026-03-01T09:00:00Z\n"
        f"{B},yes,\n"
        f"{C},set,2026-03-01T08:00:00+00:00\n"
    )
    assert reg.import_csv(csv) == 4
    reg.publish()
    assert kept(reg, A, B, C) == {A}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nhs_number,opted_out\n1234567890,true\n", "not hold a valid NHS number"),
        ("nhs_number,choice\n{A},true\n", "no 'opted_out' column"),
        ("nhs_number,opted_out\n{A},maybe\n", "true/false"),
        ("nhs_number,opted_out,at\n{A},true,yesterday\n", "ISO-8601"),
    ],
)
def test_import_csv_errors_name_the_row_not_the_number(
    reg: Register, tmp_path: Path, body: str, message: str
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(body.replace("{A}", str(A)))
    with pytest.raises(InputError, match=message) as info:
        reg.import_csv(csv)
    text = info.value.render()
    assert str(A) not in text and "1234567890" not in text
    assert reg.status().events == 0  # nothing half-imported


# ------------------------------------------------------------------ the request / reply format

VALID = format_dat(np.asarray([A, B], dtype=np.int64))
REQUEST_CASES = [
    (VALID, [A, B], "one number per line followed by a comma, LF"),
    (VALID.replace(b"\n", b"\r\n"), [A, B], "CRLF accepted"),
    (VALID[:-1], [A, B], "no final line end"),
    (VALID + b"\n", [A, B], "a trailing blank line"),
    (f"{A}\n{B},\n".encode(), [A, B], "a missing comma is tolerated"),
    (VALID + b"1234567890,\n", None, "one invalid number rejects the whole file"),
    (VALID + f"{A} ,\n".encode(), None, "stray space"),
    (VALID + b"12345,\n", None, "wrong length"),
    (b"nhs_number\n" + VALID, None, "a header is not a number"),
    (b"\n\n", None, "empty"),
]


@pytest.mark.parametrize(("body", "expected", "why"), REQUEST_CASES)
def test_parse_request(body: bytes, expected: list[int] | None, why: str) -> None:
    got = parse_request(body)
    if expected is None:
        assert got is None, why
    else:
        assert got is not None and got.tolist() == expected, why


def test_chi_numbers_keep_their_leading_zero() -> None:
    chi = next(n for n in range(101_000_000, 101_000_100) if nhs_number.is_valid(f"{n:010d}", chi=True))
    body = f"{chi:010d},\n".encode()
    got = parse_request(body)
    assert got is not None and got.tolist() == [chi]
    assert format_dat(got) == body


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 9_999), max_size=200))
def test_format_and_parse_round_trip(idx: list[int]) -> None:
    pool = nhs_number.synthetic(10_000, seed=5)
    numbers = pool[np.asarray(idx, dtype=np.int64)] if idx else np.empty(0, dtype=np.int64)
    body = format_dat(numbers)
    if numbers.size == 0:
        assert body == b"\n" and parse_request(body) is None
    else:
        got = parse_request(body)
        assert got is not None and got.tolist() == numbers.tolist()
