"""Synthetic data: deterministic, valid, linked like a real extract, faults exactly as asked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from optout import nhs_number, synth
from optout.check.cleaned_list import read_cleaned_list
from optout.nhs_number import Range, Reason


def _read(path: Path) -> pa.Table:
    if path.suffix == ".csv":
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return pq.read_table(path)


def test_population_is_the_service_population() -> None:
    """The service seeds its register with nhs_number.synthetic(n, seed): same people."""
    assert np.array_equal(synth.population(1000, 4), nhs_number.synthetic(1000, seed=4))
    assert (nhs_number.range_codes(synth.population(1000, 4)) == Range.TEST).all()


class TestCleanedList:
    def test_subset_sorted_unique_deterministic(self) -> None:
        pop = synth.population(20_000, 1)
        allow = synth.cleaned_list(pop, 0.055, seed=1)
        assert np.all(np.diff(allow) > 0)
        assert np.isin(allow, pop).all()
        assert np.array_equal(allow, synth.cleaned_list(pop, 0.055, seed=1))
        assert not np.array_equal(allow, synth.cleaned_list(pop, 0.055, seed=2))
        removed = 1 - allow.shape[0] / pop.shape[0]
        assert 0.045 < removed < 0.065

    @pytest.mark.parametrize(("rate", "kept"), [(0.0, 100), (1.0, 0)])
    def test_extremes(self, rate: float, kept: int) -> None:
        assert synth.cleaned_list(synth.population(100, 0), rate).shape == (kept,)

    def test_bad_rate(self) -> None:
        with pytest.raises(ValueError):
            synth.cleaned_list(synth.population(10, 0), 1.5)

    def test_written_as_dat_reads_back(self, tmp_path: Path) -> None:
        allow = synth.cleaned_list(synth.population(500, 3), 0.1, seed=3)
        sha = synth.write_cleaned_list(tmp_path / "c.dat", allow)
        al = read_cleaned_list(tmp_path / "c.dat", checked_at=datetime(2026, 1, 1, tzinfo=UTC))
        assert np.array_equal(al.numbers, allow) and al.sha256 == sha


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> synth.Extract:
    out = tmp_path_factory.mktemp("extract")
    return synth.extract(out, 400, 3000, seed=5, chunk_rows=700)


class TestExtract:
    def test_shapes_and_files(self, small: synth.Extract) -> None:
        assert [p.name for p in small.tables] == [
            "patients.parquet",
            "episodes.parquet",
            "procedures.parquet",
        ]
        assert small.rows["patients"] == 400 and small.rows["episodes"] == 3000
        assert 1000 < small.rows["procedures"] < 2000  # ~0.5 per episode
        assert small.total_rows == sum(small.rows.values())
        for name, path in small.paths.items():
            assert _read(path).num_rows == small.rows[name]
        assert sorted(p.name for p in small.out_dir.iterdir()) == sorted(p.name for p in small.tables)
        assert pq.ParquetFile(small.paths["episodes"]).metadata.num_row_groups == 5  # chunks of 700

    def test_links_hold(self, small: synth.Extract) -> None:
        patients = _read(small.paths["patients"])
        episodes = _read(small.paths["episodes"])
        procedures = _read(small.paths["procedures"])
        people, reasons = nhs_number.parse_array(patients["nhs_number"])
        assert (reasons == 0).all() and np.unique(people).shape == (400,)
        assert (nhs_number.range_codes(people) == Range.TEST).all()
        epi_people = episodes["nhs_number"].to_numpy()
        assert np.isin(epi_people, people).all()
        assert np.unique(epi_people).shape[0] > 300  # most people have an episode
        ids = episodes["episode_id"].to_numpy()
        assert np.array_equal(ids, np.arange(1, 3001))
        assert np.isin(procedures["episode_id"].to_numpy(), ids).all()
        assert np.unique(procedures["procedure_id"].to_numpy()).shape[0] == procedures.num_rows
        assert "nhs_number" not in procedures.column_names  # linked table, no NHS number

    def test_dates_consistent(self, small: synth.Extract) -> None:
        e = _read(small.paths["episodes"]).to_pandas()
        p = _read(small.paths["procedures"]).to_pandas().merge(e, on="episode_id")
        assert (e["discharge_date"] >= e["admission_date"]).all()
        assert (p["procedure_date"] >= p["admission_date"]).all()
        assert (p["procedure_date"] <= p["discharge_date"]).all()

    def test_deterministic(self, small: synth.Extract, tmp_path: Path) -> None:
        again = synth.extract(tmp_path, 400, 3000, seed=5, chunk_rows=700)
        for name in synth.TABLES:
            assert _read(again.paths[name]).equals(_read(small.paths[name]))
        other = synth.extract(tmp_path / "o", 400, 3000, seed=6, chunk_rows=700)
        assert not _read(other.paths["episodes"]).equals(_read(small.paths["episodes"]))

    def test_csv_matches_parquet(self, small: synth.Extract, tmp_path: Path) -> None:
        csv = synth.extract(tmp_path, 400, 3000, seed=5, format="csv", chunk_rows=700)
        for name in synth.TABLES:
            a, b = _read(csv.paths[name]), _read(small.paths[name])
            assert a.num_rows == b.num_rows
            for col in b.column_names:
                assert a[col].cast(b.schema.field(col).type).equals(b[col]), (name, col)

    def test_bad_format(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError):
            synth.extract(tmp_path, 10, 10, format="xlsx")


def test_faults_exactly_as_asked(tmp_path: Path) -> None:
    ex = synth.extract(
        tmp_path, 5000, 20_000, seed=9, format="csv", messy_rate=0.2, missing_rate=0.01, invalid_rate=0.02
    )
    patients = _read(ex.paths["patients"])
    text = patients["nhs_number"]
    vals, reasons = nhs_number.parse_array(text)
    assert int((reasons == Reason.MISSING).sum()) == ex.faults["missing"] > 0
    assert int((reasons == Reason.BAD_CHECK_DIGIT).sum()) == ex.faults["invalid"] > 0
    assert int((reasons == 0).sum()) == 5000 - ex.faults["missing"] - ex.faults["invalid"]
    raw = [s for s in text.to_pylist() if s is not None]
    assert sum(" " in s.strip() for s in raw) > 200  # 943 476 5919
    assert sum("-" in s for s in raw) > 200  # 943-476-5919
    assert sum(s != s.strip() for s in raw) > 200  # surrounding spaces
    assert ex.faults["odd spelling"] > 700
    # the same people are faulty in episodes: every episode number is one of the patients' values
    epi_vals, epi_reasons = nhs_number.parse_array(_read(ex.paths["episodes"])["nhs_number"])
    assert np.isin(epi_vals[epi_reasons == 0], vals[reasons == 0]).all()
    assert (epi_reasons == Reason.MISSING).any() and (epi_reasons == Reason.BAD_CHECK_DIGIT).any()
    assert set(np.unique(epi_reasons).tolist()) <= {0, int(Reason.MISSING), int(Reason.BAD_CHECK_DIGIT)}


def test_demo_extract(tmp_path: Path) -> None:
    ex = synth.demo_extract(tmp_path, population=3000, people=1000, seed=11)
    assert [p.name for p in ex.tables] == ["patients.csv", "episodes.parquet", "procedures.parquet"]
    assert ex.rows["patients"] == 1000 and ex.rows["episodes"] == 4000
    vals, reasons = nhs_number.parse_array(_read(ex.paths["patients"])["nhs_number"])
    assert np.isin(vals[reasons == 0], synth.population(3000, 11)).all()  # the service's people
    with pytest.raises(ValueError):
        synth.demo_extract(tmp_path, population=10, people=20, seed=1)
