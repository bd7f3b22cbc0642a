"""Deterministic synthetic data: a population, a cleaned list, and a trust-like extract.

Nothing here is real. NHS numbers come from ``nhs_number.synthetic`` (the 9xx range, never issued
to patients), so synthetic data can never be mistaken for, or collide with, a real person's record.
The same ``seed`` gives the same people everywhere: the reference central service seeds its
register with ``population(n, seed)``, so an extract made with that seed refers to its people.

The extract is three linked tables, as a hospital trust's data warehouse would export them:

- ``patients``   one row per person: ``nhs_number`` (text, as a patient administration system
  exports it), ``hospital_number``, ``date_of_birth``, ``sex``, ``postcode_district``, ``gp_practice``;
- ``episodes``   many rows per person: ``episode_id``, ``nhs_number`` (int64), dates and codes;
- ``procedures`` rows linked to an episode by ``episode_id`` and carrying no NHS number, so
  removing a person's record (001 §8.1) needs the link ``procedures.episode_id=episodes.episode_id``.

Tables are generated and written in chunks (NumPy + Arrow, one row group per chunk), so memory
stays flat whatever the row count: 50 M rows are written in a few hundred MB.

Optional, realistic data-quality faults, decided per person so that every table agrees:
odd but valid spellings in the text column (``943 476 5919``, ``943-476-5919``, surrounding
spaces), missing NHS numbers, and invalid ones (one digit wrong, so the check digit fails).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from optout import nhs_number

__all__ = [
    "Extract",
    "cleaned_list",
    "demo_extract",
    "extract",
    "population",
    "write_cleaned_list",
]

TABLES = ("patients", "episodes", "procedures")
LINK = "procedures.episode_id=episodes.episode_id"
NHS_COLUMNS = {"patients": "nhs_number", "episodes": "nhs_number"}
CHUNK_ROWS = 1_000_000
_EPOCH_2015 = 16_436  # days from 1970-01-01 to 2015-01-01
_DAYS_1930 = -14_610
_DAYS_2024 = 19_722

_ADMISSION_METHODS = pa.array(["11", "12", "13", "21", "22", "23", "24", "28", "31", "81"])
_ADMISSION_P = np.array([0.35, 0.15, 0.05, 0.2, 0.08, 0.04, 0.03, 0.05, 0.03, 0.02])
_SPECIALTIES = pa.array(
    ["100", "101", "110", "120", "130", "300", "301", "320", "340", "400", "420", "430", "501", "502"]
)
_SEXES = pa.array(["1", "2", "9"])
_SEX_P = np.array([0.49, 0.5, 0.01])


def _codes(rng: np.random.Generator, n: int, letters: str, digits: int, sep_at: int) -> pa.Array:
    """A deterministic vocabulary of code-like strings (ICD-10 ``I21.9``, OPCS-4 ``K40.1``)."""
    out: set[str] = set()
    while len(out) < n:
        d = "".join(str(x) for x in rng.integers(0, 10, size=digits))
        out.add(f"{rng.choice(list(letters))}{d[:sep_at]}.{d[sep_at:]}")
    return pa.array(sorted(out))


def population(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct valid synthetic NHS numbers (int64, 9xx range); same seed, same people."""
    return nhs_number.synthetic(n, seed=seed)


_population = population  # demo_extract's keyword argument shadows the name


def cleaned_list(pop: np.ndarray, opt_out_rate: float = 0.055, seed: int = 0) -> np.ndarray:
    """The allow-list the check service would return for ``pop``: sorted unique int64 numbers of
    the people WITHOUT an opt-out, each person opted out with probability ``opt_out_rate``."""
    if not 0.0 <= opt_out_rate <= 1.0:
        raise ValueError("opt_out_rate must be between 0 and 1")
    pop = np.asarray(pop, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x0C1EA4])
    keep = rng.random(pop.shape[0]) >= opt_out_rate
    return np.unique(pop[keep])


def write_cleaned_list(path: str | Path, allow: np.ndarray) -> str:
    """Write an allow-list as the service's ``.dat`` reply; returns its SHA-256."""
    from optout.dat import write_dat

    return write_dat(path, allow)


@dataclass
class Extract:
    """What ``extract`` wrote, and how to apply opt-outs to it."""

    out_dir: Path
    paths: dict[str, Path]
    rows: dict[str, int]
    people: int
    seed: int
    links: list[str] = field(default_factory=lambda: [LINK])
    nhs_columns: dict[str, str] = field(default_factory=lambda: dict(NHS_COLUMNS))
    faults: dict[str, int] = field(default_factory=dict)  # people per fault kind

    @property
    def tables(self) -> list[Path]:
        return [self.paths[t] for t in TABLES]

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


class _Writer:
    """Streams record batches to a Parquet or CSV file, atomically (temp file, then rename)."""

    def __init__(
        self, path: Path, schema: pa.Schema, fmt: str, row_group_size: int, compression: str = "snappy"
    ) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.rows = 0
        self._w: pq.ParquetWriter | pacsv.CSVWriter
        if fmt == "parquet":
            self._w = pq.ParquetWriter(self.tmp, schema, compression=compression)
        elif fmt == "csv":
            self._w = pacsv.CSVWriter(self.tmp, schema)
        else:
            raise ValueError(f"format must be 'parquet' or 'csv', not {fmt!r}")
        self.row_group_size = row_group_size

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if isinstance(self._w, pq.ParquetWriter):
            self._w.write(batch, row_group_size=self.row_group_size)
        else:
            self._w.write(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self._w.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._w.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _spell(numbers: pa.Array, style: np.ndarray) -> pa.Array:
    """Text NHS numbers; style 0 plain, 1 ``943 476 5919``, 2 ``943-476-5919``, 3 surrounded by spaces."""
    text = pc.utf8_lpad(pc.cast(numbers, pa.string()), 10, "0")
    a = pc.utf8_slice_codeunits(text, 0, 3)
    b = pc.utf8_slice_codeunits(text, 3, 6)
    c = pc.utf8_slice_codeunits(text, 6, 10)
    out = text
    for code, spelled in (
        (1, pc.binary_join_element_wise(a, b, c, " ")),
        (2, pc.binary_join_element_wise(a, b, c, "-")),
        (3, pc.binary_join_element_wise(" ", text, " ", "")),
    ):
        if np.any(style == code):
            out = pc.if_else(pa.array(style == code), spelled, out)
    return out


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def extract(
    out_dir: str | Path,
    people: int | np.ndarray,
    rows: int,
    seed: int = 0,
    format: str | Mapping[str, str] = "parquet",
    *,
    procedures_per_episode: float = 0.5,
    messy_rate: float = 0.0,
    missing_rate: float = 0.0,
    invalid_rate: float = 0.0,
    chunk_rows: int = CHUNK_ROWS,
    compression: str = "snappy",
) -> Extract:
    """Write ``patients``, ``episodes`` (``rows`` rows) and ``procedures`` under ``out_dir``.

    ``people``: a count (``population(people, seed)`` is used) or an array of NHS numbers.
    ``format``: "parquet" or "csv" for every table, or a mapping per table name.
    ``messy_rate``: share of people whose text NHS number is spelled oddly but validly.
    ``missing_rate`` / ``invalid_rate``: share of people whose NHS number is missing / invalid
    (one digit wrong) in every table. ``compression``: the Parquet codec. Same arguments, same files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fmts = {t: (format[t] if isinstance(format, Mapping) else format) for t in TABLES}
    for t, f in fmts.items():
        if f not in ("parquet", "csv"):
            raise ValueError(f"format for {t} must be 'parquet' or 'csv', not {f!r}")
    numbers = population(people, seed) if isinstance(people, (int, np.integer)) else np.asarray(people)
    numbers = numbers.astype(np.int64, copy=False)
    n_people = int(numbers.shape[0])
    if n_people == 0 and rows > 0:
        raise ValueError("episodes need at least one person")
    ss = np.random.SeedSequence([seed, 0x5E7A])
    r_people, r_epi, r_vocab = (np.random.default_rng(s) for s in ss.spawn(3))

    # per person: the number as recorded, and which fault (if any) it carries
    fault = np.zeros(n_people, dtype=np.uint8)  # 0 none, 1 missing, 2 invalid
    u = r_people.random(n_people)
    fault[u < missing_rate + invalid_rate] = 2
    fault[u < missing_rate] = 1
    recorded = numbers.copy()
    bad = fault == 2
    recorded[bad] = (recorded[bad] // 10) * 10 + (recorded[bad] % 10 + 1) % 10  # one digit wrong
    style = np.where(r_people.random(n_people) < messy_rate, r_people.integers(1, 4, n_people), 0)
    weights = np.cumsum(r_people.gamma(0.6, 1.0, n_people))  # a few people have many episodes

    paths = {t: out / f"{t}.{fmts[t]}" for t in TABLES}
    icd10 = _codes(r_vocab, 400, "ABCDEFGHIJKLMNOPQRSTVZ", 3, 2)
    opcs4 = _codes(r_vocab, 250, "ABCEFGHJKLMNOPQRSTUVWX", 3, 2)

    schemas = {
        "patients": pa.schema(
            [
                ("nhs_number", pa.string()),
                ("hospital_number", pa.string()),
                ("date_of_birth", pa.date32()),
                ("sex", pa.string()),
                ("postcode_district", pa.string()),
                ("gp_practice", pa.string()),
            ]
        ),
        "episodes": pa.schema(
            [
                ("episode_id", pa.int64()),
                ("nhs_number", pa.int64()),
                ("admission_date", pa.date32()),
                ("discharge_date", pa.date32()),
                ("admission_method", pa.string()),
                ("specialty", pa.string()),
                ("primary_diagnosis", pa.string()),
            ]
        ),
        "procedures": pa.schema(
            [
                ("procedure_id", pa.int64()),
                ("episode_id", pa.int64()),
                ("procedure_date", pa.date32()),
                ("opcs_code", pa.string()),
            ]
        ),
    }
    writers: dict[str, _Writer] = {}
    try:
        for t in TABLES:
            writers[t] = _Writer(paths[t], schemas[t], fmts[t], chunk_rows, compression)
        districts = pa.array(
            [f"{a}{n}" for a in ("LS", "M", "B", "S", "NE", "BD", "HU", "YO") for n in range(1, 30)]
        )
        for start, n in _chunks(n_people, chunk_rows):
            sl = slice(start, start + n)
            nhs = pa.array(recorded[sl], mask=fault[sl] == 1)
            idx = pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64))
            writers["patients"].write(
                pa.record_batch(
                    [
                        _spell(nhs, style[sl]),
                        pc.binary_join_element_wise(
                            "RX", pc.utf8_lpad(pc.cast(idx, pa.string()), 8, "0"), ""
                        ),
                        pa.array(r_people.integers(_DAYS_1930, _DAYS_2024, n).astype(np.int32), pa.date32()),
                        _SEXES.take(pa.array(r_people.choice(3, n, p=_SEX_P))),
                        districts.take(pa.array(r_people.integers(0, len(districts), n))),
                        pc.binary_join_element_wise(
                            "B86",
                            pc.utf8_lpad(
                                pc.cast(pa.array(r_people.integers(0, 999, n)), pa.string()), 3, "0"
                            ),
                            "",
                        ),
                    ],
                    schema=schemas["patients"],
                )
            )
        next_proc = 1
        for start, n in _chunks(rows, chunk_rows):
            person = np.searchsorted(weights, r_epi.random(n) * weights[-1], side="right")
            person = np.minimum(person, n_people - 1)
            episode_id = np.arange(start + 1, start + n + 1, dtype=np.int64)
            admitted = (_EPOCH_2015 + r_epi.integers(0, 3653, n)).astype(np.int32)
            los = (r_epi.geometric(0.35, n) - 1).astype(np.int32)
            writers["episodes"].write(
                pa.record_batch(
                    [
                        pa.array(episode_id),
                        pa.array(recorded[person], mask=fault[person] == 1),
                        pa.array(admitted, pa.date32()),
                        pa.array(admitted + los, pa.date32()),
                        _ADMISSION_METHODS.take(pa.array(r_epi.choice(len(_ADMISSION_P), n, p=_ADMISSION_P))),
                        _SPECIALTIES.take(pa.array(r_epi.integers(0, len(_SPECIALTIES), n))),
                        icd10.take(pa.array(r_epi.integers(0, len(icd10), n))),
                    ],
                    schema=schemas["episodes"],
                )
            )
            counts = r_epi.poisson(procedures_per_episode, n)
            p = int(counts.sum())
            if p:
                offset = np.floor(r_epi.random(p) * (np.repeat(los, counts) + 1)).astype(np.int32)
                writers["procedures"].write(
                    pa.record_batch(
                        [
                            pa.array(np.arange(next_proc, next_proc + p, dtype=np.int64)),
                            pa.array(np.repeat(episode_id, counts)),
                            pa.array(np.repeat(admitted, counts) + offset, pa.date32()),
                            opcs4.take(pa.array(r_epi.integers(0, len(opcs4), p))),
                        ],
                        schema=schemas["procedures"],
                    )
                )
                next_proc += p
        for t in TABLES:
            writers[t].close()
    except BaseException:
        for w in writers.values():
            if w.tmp.exists():
                w.abort()
        raise
    return Extract(
        out_dir=out,
        paths=paths,
        rows={t: writers[t].rows for t in TABLES},
        people=n_people,
        seed=seed,
        faults={
            "missing": int((fault == 1).sum()),
            "invalid": int((fault == 2).sum()),
            "odd spelling": int(((style > 0) & (fault == 0)).sum()),
        },
    )


def demo_extract(
    out_dir: str | Path,
    *,
    population: int,
    people: int,
    seed: int,
    rows: int | None = None,
) -> Extract:
    """The extract ``make demo`` uses: ``people`` of the service's seeded ``population`` (same
    seed), patients as CSV with a few realistic NHS-number faults, episodes and procedures as
    Parquet. Default ``rows``: four episodes per person on average."""
    pop = _population(population, seed)
    if not 0 < people <= pop.shape[0]:
        raise ValueError("people must be between 1 and the population size")
    rng = np.random.default_rng([seed, 0xDE30])
    chosen = rng.choice(pop, size=people, replace=False)
    return extract(
        out_dir,
        chosen,
        rows if rows is not None else people * 4,
        seed,
        {"patients": "csv", "episodes": "parquet", "procedures": "parquet"},
        messy_rate=0.03,
        missing_rate=0.001,
        invalid_rate=0.002,
    )
