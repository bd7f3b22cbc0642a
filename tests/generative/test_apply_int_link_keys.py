"""Integer link keys (Parquet on both sides) are compared as numbers by the DuckDB engine; it must
still agree with the pure-Python reference engine (keys compared as text, 001 §8.1): duplicate
parent keys (one person or two), orphans, missing keys, int32 against int64, a grandchild."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.generative import assert_engines_agree

from optout.dat import write_dat
from optout.nhs_number import synthetic
from optout.release.engines import embedded_engine_names

POOL = [int(n) for n in synthetic(8, seed=11)]
CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = CHECKED + timedelta(days=2)
# invalid or missing numbers in an integer column: None, too short, bad check digit
INVALID = [None, 12345, POOL[0] - POOL[0] % 10 + (POOL[0] % 10 + 1) % 10]

keys = st.none() | st.integers(0, 6)


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    number = st.sampled_from(POOL) | st.sampled_from(INVALID)
    return {
        "parent": draw(st.lists(st.tuples(keys, number), min_size=1, max_size=20)),
        "child": draw(st.lists(st.tuples(st.integers(0, 5), keys), min_size=1, max_size=20)),
        "grand": draw(st.lists(st.none() | st.integers(0, 7), min_size=1, max_size=12)),
        "allow": draw(st.sets(st.sampled_from(POOL), max_size=len(POOL))),
        "unmatched": draw(st.sampled_from(["withhold", "release"])),
        "int32": draw(st.booleans()),
    }


ENGINES = embedded_engine_names()  # every in-process engine, each held to the reference


def _rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario())
def test_integer_link_keys_agree_with_reference(s: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        child_key = pa.int32() if s["int32"] else pa.int64()
        pq.write_table(
            pa.table(
                {
                    "pid": pa.array([k for k, _ in s["parent"]], pa.int64()),
                    "nhs_number": pa.array([n for _, n in s["parent"]], pa.int64()),
                }
            ),
            root / "patients.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "cid": pa.array([c for c, _ in s["child"]], pa.int64()),
                    "pid": pa.array([p for _, p in s["child"]], child_key),
                }
            ),
            root / "episodes.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "item": pa.array(list(range(len(s["grand"]))), pa.int64()),
                    "cid": pa.array(s["grand"], pa.int64()),
                }
            ),
            root / "items.parquet",
        )
        tables = [root / "patients.parquet", root / "episodes.parquet", root / "items.parquet"]
        cl = root / "cleaned.dat"
        write_dat(cl, sorted(s["allow"]))
        assert_engines_agree(
            tables,
            root,
            ENGINES,
            _rows,
            cleaned_list=cl,
            checked_at=CHECKED,
            nhs_columns={"patients": "nhs_number"},
            links=["episodes.pid=patients.pid", "items.cid=episodes.cid"],
            unmatched=s["unmatched"],
            release_reason="disproportionate-effort" if s["unmatched"] == "release" else None,
            now=NOW,
        )
