"""NHS-number validation throughput: ``validate_int_array`` on an int64 column, one core."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.core import Context

NAME = "validate"
TITLE = "validate_int_array, int64 column, 1 core (values/s)"
ORDER = 50
GROUP = "validation"
REPEAT = 1


def run(ctx: Context) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    from optout.nhs_number import validate_int_array

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever NumPy does
    if ctx.format == "parquet":
        col = pq.read_table(ctx.tables["episodes"], columns=["nhs_number"])["nhs_number"].fill_null(0)
    else:
        import pyarrow.csv as pacsv

        col = pacsv.read_csv(ctx.tables["episodes"])["nhs_number"].fill_null(0)
    x = col.to_numpy().astype(np.int64, copy=False)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        codes = validate_int_array(x)
        best = min(best, time.perf_counter() - t0)
    return {
        "seconds": best,
        "values": int(x.shape[0]),
        "values_per_second": x.shape[0] / best,
        "invalid": int((codes != 0).sum()),
    }
