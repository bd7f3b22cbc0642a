"""Text link keys (every CSV) are compared as text (001 §8.1). The Polars engine summarises a
parent whose keys are all integers written the one way ``str(int)`` writes them, and rise row by
row, by the first key alone; it must still agree with the pure-Python reference engine when the
keys are that, nearly that (a leading zero, a sign, a space, an empty key, a repeat, a gap) or
anything else, on the parent side or the child's."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.support.generative import assert_engines_agree, write_csv

from optout.dat import write_dat
from optout.nhs_number import synthetic
from optout.release.engines import embedded_engine_names

POOL = [str(n) for n in synthetic(6, seed=17)]
CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = CHECKED + timedelta(days=2)
NUMBERS = st.sampled_from([*POOL, "", "123", POOL[0][:9] + str((int(POOL[0][9]) + 1) % 10)])
# how a key near a canonical integer may be spelt instead
SPELLINGS = st.sampled_from(["0{}", "+{}", " {}", "{} ", "-{}", "-0{}", "", "{}0", "x{}", "{}.0", "\t{}"])


@st.composite
def keys_near(draw: Any, first: int, n: int) -> list[str]:
    """Canonical integers rising from ``first``, with a few changed (or none)."""
    out = [str(first + i) for i in range(n)]
    for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        how = draw(st.sampled_from(["spell", "repeat", "gap"]))
        if how == "spell":
            out[i] = draw(SPELLINGS).format(out[i])
        elif how == "repeat" and i:
            out[i] = out[i - 1]
        else:
            out[i] = str(first + i + draw(st.integers(1, 3)))
    return out


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    first = draw(st.sampled_from([0, 1, 7, 100]))
    n = draw(st.integers(1, 12))
    parent_keys = draw(keys_near(first, n))
    child_key = st.sampled_from(parent_keys) | st.integers(first - 2, first + n + 2).map(str)
    spelt = st.tuples(SPELLINGS, st.integers(first, first + n)).map(lambda t: t[0].format(t[1]))
    child_key = child_key | spelt
    return {
        "parent": [(k, draw(NUMBERS)) for k in parent_keys],
        "child": draw(st.lists(st.tuples(child_key, NUMBERS), min_size=1, max_size=15)),
        "grand": draw(st.lists(st.integers(-1, 16).map(str) | st.just(""), min_size=1, max_size=10)),
        "allow": draw(st.sets(st.sampled_from(POOL), max_size=len(POOL))),
        "child_has_number": draw(st.booleans()),
    }


ENGINES = embedded_engine_names()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario())
@example(  # a dense parent, and a child key spelt with a leading zero: no parent (text differs)
    {
        "parent": [("1", POOL[0]), ("2", POOL[1])],
        "child": [("01", POOL[0]), ("2", POOL[1])],
        "grand": ["0", "1"],
        "allow": set(POOL),
        "child_has_number": True,
    }
)
@example(  # a parent key spelt with a sign: not summarised as integers
    {
        "parent": [("1", POOL[0]), ("+2", POOL[1]), ("3", POOL[2])],
        "child": [("2", POOL[1]), ("+2", POOL[1])],
        "grand": ["0", "1"],
        "allow": set(POOL[:2]),
        "child_has_number": False,
    }
)
def test_text_link_keys_agree_with_reference(s: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_csv(root / "patients.csv", ["pid", "nhs_number"], s["parent"])
        child_cols = ["cid", "pid", "nhs_number"] if s["child_has_number"] else ["cid", "pid"]
        child_rows = [
            (str(i), k, n) if s["child_has_number"] else (str(i), k) for i, (k, n) in enumerate(s["child"])
        ]
        write_csv(root / "episodes.csv", child_cols, child_rows)
        write_csv(root / "items.csv", ["item", "cid"], [(f"i{i}", c) for i, c in enumerate(s["grand"])])
        tables = [root / "patients.csv", root / "episodes.csv", root / "items.csv"]
        cl = root / "cleaned.dat"
        write_dat(cl, sorted(int(n) for n in s["allow"]))
        nhs = {"patients": "nhs_number"}
        if s["child_has_number"]:
            nhs["episodes"] = "nhs_number"
        assert_engines_agree(
            tables,
            root,
            ENGINES,
            Path.read_bytes,
            cleaned_list=cl,
            checked_at=CHECKED,
            nhs_columns=nhs,
            links=["episodes.pid=patients.pid", "items.cid=episodes.cid"],
            unmatched="withhold",
            now=NOW,
        )
