"""Tamper tests for the audit trail: edit the SQLite database behind optout's back, and check
that ``verify`` catches it and names the first bad entry (issue: "A tampered audit file: `verify`
fails with the first bad entry")."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.tamper import open_for_tampering

from optout import audit
from optout.errors import IntegrityError, UsageError
from optout.store import Store

N = 6


@pytest.fixture()
def chain(tmp_path: Path) -> tuple[Store, Path]:
    db = tmp_path / "audit.db"
    store = Store(f"sqlite:///{db}")
    for i in range(1, N + 1):
        audit.record(
            store,
            f"test.step{i}",
            actor="ig-lead",
            subject=f"thing-{i}",
            details={"rows_in": 100 + i, "rows_out": 90 + i},
            at=f"2026-01-{i:02d}T10:00:00.000000+00:00",
        )
    return store, db


def sql(db: Path, *statements: str, params: tuple = ()) -> None:
    con = open_for_tampering(db)
    try:
        for s in statements:
            con.execute(s, params if "?" in s else ())
        con.commit()
    finally:
        con.close()


def row(db: Path, seq: int) -> tuple:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "select seq, at, actor, action, subject, details, prev_hash, hash from audit_log where seq=?",
            (seq,),
        ).fetchone()
    finally:
        con.close()


def test_an_untouched_chain_verifies(chain: tuple[Store, Path]) -> None:
    store, _ = chain
    v = audit.verify(store)
    assert v.ok and v.count == N and v.head_seq == N
    assert v.head_hash == audit.entries(store)[-1].hash
    assert "intact" in v.describe() and str(N) in v.describe()
    v.raise_if_broken()


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    v = audit.verify(Store(f"sqlite:///{tmp_path / 'e.db'}"))
    assert v.ok and v.count == 0 and v.head_hash is None


def _change_details(db: Path) -> None:
    sql(db, """update audit_log set details='{"rows_in":1,"rows_out":1}' where seq=3""")


def _change_actor(db: Path) -> None:
    sql(db, "update audit_log set actor='someone-else' where seq=3")


def _change_time(db: Path) -> None:
    sql(db, "update audit_log set at='2026-01-03T09:59:59.000000+00:00' where seq=3")


def _change_action(db: Path) -> None:
    sql(db, "update audit_log set action='release.withdrawn' where seq=3")


def _delete_middle(db: Path) -> None:
    sql(db, "delete from audit_log where seq=3")


def _delete_first(db: Path) -> None:
    sql(db, "delete from audit_log where seq=1")


def _delete_and_renumber(db: Path) -> None:
    # a careful tamperer closes the gap: seq 4.. become 3..
    sql(
        db,
        "delete from audit_log where seq=3",
        "update audit_log set seq=-(seq-1) where seq>3",
        "update audit_log set seq=-seq where seq<0",
    )


def _insert_in_middle(db: Path) -> None:
    # make room at seq 3, then insert an entry that chains correctly from seq 2
    sql(db, "update audit_log set seq=-(seq+1) where seq>=3", "update audit_log set seq=-seq where seq<0")
    prev = row(db, 2)
    at, details = "2026-01-02T12:00:00.000000+00:00", "{}"
    h = audit.entry_hash(3, at, "intruder", "release.disclosed", None, details, prev[7])
    sql(
        db,
        "insert into audit_log (seq, at, actor, action, subject, details, prev_hash, hash) "
        "values (?,?,?,?,?,?,?,?)",
        params=(3, at, "intruder", "release.disclosed", None, details, prev[7], h),
    )


def _insert_forged_at_end(db: Path) -> None:
    sql(
        db,
        "insert into audit_log (seq, at, actor, action, subject, details, prev_hash, hash) "
        "values (?,?,?,?,?,?,?,?)",
        params=(N + 1, "2026-02-01T00:00:00+00:00", "x", "release.disclosed", None, "{}", "0" * 64, "f" * 64),
    )


def _swap_seq(db: Path) -> None:
    sql(
        db,
        "update audit_log set seq=-1 where seq=3",
        "update audit_log set seq=3 where seq=4",
        "update audit_log set seq=4 where seq=-1",
    )


def _replace_hash(db: Path) -> None:
    # rewrite one entry AND its own hash: the next entry's link breaks
    r = row(db, 3)
    details = '{"rows_in":1,"rows_out":1}'
    h = audit.entry_hash(3, r[1], r[2], r[3], r[4], details, r[6])
    sql(db, "update audit_log set details=?, hash=? where seq=3", params=(details, h))


def _renumber_seq(db: Path) -> None:
    sql(db, "update audit_log set seq=99 where seq=6")


CASES: list[tuple[str, Callable[[Path], None], int, set[str]]] = [
    ("change a field (details)", _change_details, 3, {"hash mismatch"}),
    ("change a field (actor)", _change_actor, 3, {"hash mismatch"}),
    ("change a field (action)", _change_action, 3, {"hash mismatch"}),
    ("change a field (time)", _change_time, 3, {"hash mismatch"}),
    ("delete a row", _delete_middle, 4, {"gap in seq", "broken link"}),
    ("delete the first row", _delete_first, 2, {"gap in seq", "broken link"}),
    ("delete a row and renumber the rest", _delete_and_renumber, 3, {"out of order", "broken link"}),
    ("insert a row in the middle", _insert_in_middle, 4, {"out of order", "broken link"}),
    ("insert a forged row at the end", _insert_forged_at_end, N + 1, {"hash mismatch", "broken link"}),
    ("swap two rows' seq", _swap_seq, 3, {"out of order", "broken link"}),
    ("rewrite an entry and its own hash", _replace_hash, 4, {"broken link"}),
    ("renumber the last row", _renumber_seq, 99, {"gap in seq", "out of order"}),
]


@pytest.mark.parametrize(("what", "tamper", "first_seq", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_verify_catches_tampering_and_names_the_entry(
    chain: tuple[Store, Path], what: str, tamper: Callable[[Path], None], first_seq: int, kinds: set[str]
) -> None:
    store, db = chain
    tamper(db)
    v = audit.verify(store)
    assert not v.ok, what
    first = v.first
    assert first is not None
    assert first.seq == first_seq, v.problems
    assert {p.kind for p in v.problems if p.seq == first_seq} == kinds, v.problems
    assert f"seq {first_seq}" in v.describe()
    with pytest.raises(IntegrityError) as exc:
        v.raise_if_broken()
    assert exc.value.exit_code == 8


def test_swapped_rows_say_where_each_was_written(chain: tuple[Store, Path]) -> None:
    store, db = chain
    _swap_seq(db)
    v = audit.verify(store)
    details = [p.detail for p in v.problems if p.kind == "out of order"]
    assert any("written as seq 4" in d for d in details)
    assert any("written as seq 3" in d for d in details)


def test_truncating_the_tail_needs_an_anchor(chain: tuple[Store, Path]) -> None:
    """A pure chain cannot see entries cut off the end; the exported head hash can."""
    store, db = chain
    head = audit.verify(store).head_hash
    assert head is not None
    sql(db, "delete from audit_log where seq>4")
    assert audit.verify(store).ok  # the shortened chain is self-consistent: documented limitation
    v = audit.verify(store, expect_head=head)
    assert not v.ok
    assert v.first is not None and v.first.kind == "head missing"


def test_an_anchor_still_in_a_grown_log_is_fine(chain: tuple[Store, Path]) -> None:
    store, _ = chain
    head = audit.verify(store).head_hash
    audit.record(store, "test.later", actor="t")
    v = audit.verify(store, expect_head=head.upper() if head else None)
    assert v.ok and v.anchored and v.count == N + 1


def test_expect_head_must_look_like_a_hash(chain: tuple[Store, Path]) -> None:
    store, _ = chain
    with pytest.raises(UsageError):
        audit.verify(store, expect_head="not-a-hash")


def test_entries_between_is_half_open(chain: tuple[Store, Path]) -> None:
    store, _ = chain
    got = audit.entries_between(store, "2026-01-02", "2026-01-04")
    assert [e.seq for e in got] == [2, 3]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    data=st.data(),
    field=st.sampled_from(["at", "actor", "action", "subject", "details", "prev_hash", "hash"]),
)
def test_any_single_field_change_is_caught_at_that_entry(n: int, data: st.DataObject, field: str) -> None:
    """Generative: change one field of one entry (in memory) and the check names that entry."""
    items: list[audit.Entry] = []
    prev = audit.GENESIS
    for i in range(1, n + 1):
        at, details = f"2026-01-01T00:00:{i:02d}+00:00", audit.canonical({"rows": i})
        h = audit.entry_hash(i, at, "a", "x.y", None, details, prev)
        items.append(audit.Entry(i, at, "a", "x.y", None, details, prev, h))
        prev = h
    assert audit.check_chain(items).ok
    k = data.draw(st.integers(min_value=0, max_value=n - 1))
    old = getattr(items[k], field)
    new = data.draw(st.text(min_size=1, max_size=70).filter(lambda t: t != old and t != (old or "")))
    items[k] = dataclasses.replace(items[k], **{field: new})
    v = audit.check_chain(items)
    assert not v.ok and v.first is not None and v.first.seq == k + 1
