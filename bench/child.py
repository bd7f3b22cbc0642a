"""Runs one stage inside its own process: ``python -m bench.child STAGE CONTEXT.json RESULT.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import stages
from bench.core import Context


def main() -> None:
    name, ctx_file, result_file = sys.argv[1:4]
    ctx = Context.from_json(Path(ctx_file).read_text())
    result = stages.get(name).run(ctx)
    Path(result_file).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
