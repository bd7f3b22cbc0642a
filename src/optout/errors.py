"""One exception tree for everything a user can get wrong, each kind with its own exit code.

    OptoutError                 exit 1   (base; never raised directly for user mistakes)
    ├── UsageError              exit 2   wrong or contradictory options
    ├── InputError              exit 3   a file we were given cannot be read or is malformed
    ├── PolicyRefusal           exit 4   the policy forbids what was asked (fail closed)
    ├── OutputError             exit 5   the output cannot be written (exists, permissions, disk full)
    ├── TransportError          exit 6   MESH / central service unreachable or refused us
    ├── PendingError            exit 7   a check request has not been answered yet (try again later)
    ├── IntegrityError          exit 8   a file failed its integrity check (tampered, wrong key)
    └── NotFoundError           exit 9   a named release, flow, request or profile does not exist

Interrupted by Ctrl-C: exit 130. An unexpected internal error: exit 70 (with a traceback only
when OPTOUT_DEBUG=1).

Rules for every message (see DEVELOPERS.md "security properties"):
- say what is wrong, where (file, row, column), and exactly how to fix it (``hint``);
- never include an NHS number, or any other value from a patient row: describe the *class* of
  the value instead (``value_class``: "missing", "wrong length", ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


@dataclass
class Location:
    """Where in an input the problem is. Never holds the offending value itself."""

    file: str | Path | None = None
    row: int | None = None  # 1-based data row (header not counted), as a spreadsheet user counts
    line: int | None = None  # 1-based physical line in the file, when known
    column: str | None = None
    value_class: str | None = None

    def describe(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(f"file {Path(self.file).name!s}")
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        if self.value_class is not None:
            parts.append(f"value: {self.value_class}")
        return ", ".join(parts)


class OptoutError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: int = 1
    kind: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, where: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def render(self) -> str:
        text = self.message
        if self.where is not None:
            loc = self.where.describe()
            if loc:
                text = f"{text} ({loc})"
        if self.hint:
            text = f"{text}\n  how to fix: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.kind, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            out["hint"] = self.hint
        if self.where is not None:
            out["where"] = {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(self.where).items()
                if v is not None
            }
        return out


class UsageError(OptoutError):
    exit_code = 2
    kind = "usage"


class InputError(OptoutError):
    exit_code = 3
    kind = "input"


class PolicyRefusal(OptoutError):
    exit_code = 4
    kind = "policy"


class OutputError(OptoutError):
    exit_code = 5
    kind = "output"


class TransportError(OptoutError):
    exit_code = 6
    kind = "transport"


class PendingError(OptoutError):
    exit_code = 7
    kind = "pending"


class IntegrityError(OptoutError):
    exit_code = 8
    kind = "integrity"


class NotFoundError(OptoutError):
    exit_code = 9
    kind = "not-found"


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "error (generic); for optout doctor: findings were reported (each with how to fix it)",
    2: "usage error: wrong or contradictory options",
    3: "input error: a file could not be read or is malformed (file, row and column are named)",
    4: "policy refusal: the policy forbids what was asked (e.g. unmatched NHS numbers, expired cache)",
    5: "output error: output exists (use --force), is not writable, or the disk is full",
    6: "transport error: MESH or the central service could not be reached or refused the request",
    7: "pending: the check request has not been answered yet; collect it later",
    8: "integrity error: a file failed its integrity check (tampered, or the wrong key)",
    9: "not found: the named release, flow, request or profile does not exist",
    70: "internal error: a bug; run again with OPTOUT_DEBUG=1 and report it",
    130: "interrupted (Ctrl-C): nothing was left half-written",
}
