"""The reference service's responder: answers check requests on its MESH mailbox like the real one.

For each request (workflow ``SPINE_NTT_UPHOLDING``) in the service mailbox:

1. a request whose Subject or LocalID is missing or holds anything but letters, digits, ``-`` and
   ``_`` is silently ignored, as the real service does (logged, by message id only);
2. every line is validated: one line that is not a valid NHS number followed by a comma and the
   whole file is rejected with the single line ``The file contains one or more invalid NHS
   Numbers.``;
3. otherwise a ``SUCCESS`` notification (small JSON: counts and ids) is sent, then the cleaned
   list: the submitted numbers of people *without* an opt-out in the latest published snapshot
   (001 §8.4), same format and order as the request. Both carry the request's LocalID.

The request is acknowledged only after its reply is sent and the fact is recorded in the
register, so a crash never loses a request; a request delivered again (not acknowledged in time)
is acknowledged without a second answer. Logs carry message ids, LocalIDs and counts, never a number.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime

import numpy as np

from optout import nhs_number
from optout.config import WORKFLOW_ID
from optout.dat import encode_dat
from optout.errors import TransportError
from optout.mesh import Backoff, MeshMailbox, Received
from optout.service.register import Register

__all__ = ["REJECTION", "Responder", "format_dat", "parse_request"]

REJECTION = b"The file contains one or more invalid NHS Numbers.\n"
SAFE = re.compile(r"[A-Za-z0-9_-]+")
_LINE = re.compile(rb"[0-9]{10},?")

log = logging.getLogger("optout.service")


def parse_request(body: bytes) -> np.ndarray | None:
    """The numbers of a request ``.dat`` in file order, or None when any line is not valid.

    A line is 10 digits followed by a comma (LF or CRLF; blank lines are skipped). Every number
    must pass the Modulus 11 check; a leading zero (a Scottish CHI number) is kept.
    """
    data = body.replace(b"\r\n", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    values: np.ndarray | None = None
    if data and len(data) % 12 == 0:
        buf = np.frombuffer(data, dtype=np.uint8).reshape(-1, 12)
        if (buf[:, 10] == ord(",")).all() and (buf[:, 11] == ord("\n")).all():
            digits = buf[:, :10] - np.uint8(ord("0"))  # uint8: anything below "0" wraps above 9
            if not (digits > 9).any():
                values = np.zeros(buf.shape[0], dtype=np.int64)
                for i in range(10):  # column by column: no (n, 10) int64 temporary
                    values *= 10
                    values += digits[:, i]
    if values is None:  # the general path: odd line ends, blank lines, a missing comma
        out: list[int] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            if not _LINE.fullmatch(line):
                return None
            out.append(int(line[:10]))
        values = np.asarray(out, dtype=np.int64)
    if values.size == 0:
        return None
    # chi=True: a 10-character number with a leading zero is a CHI number, valid by Modulus 11
    if (nhs_number.validate_int_array(values, chi=True) != 0).any():
        return None
    return values


def format_dat(numbers: np.ndarray) -> bytes:
    """``DDDDDDDDDD,`` + LF per number (leading zeros kept); a lone LF for an empty list."""
    x = np.asarray(numbers, dtype=np.int64)
    if x.size == 0:
        return b"\n"  # MESH refuses an empty message; this parses as an empty list
    return encode_dat(x)


class Responder:
    """Answers every pending request on the service mailbox from the register's snapshot."""

    def __init__(
        self,
        register: Register,
        mailbox: MeshMailbox,
        *,
        clock: Callable[[], datetime] | None = None,
        workflow_id: str = WORKFLOW_ID,
    ) -> None:
        self.register = register
        self.mailbox = mailbox
        self.clock = clock or register.clock
        self.workflow_id = workflow_id

    def run_once(self) -> int:
        """Answer (or reject) every request waiting now; returns how many were answered or rejected."""
        self.register.ensure_published()  # 001 §8.4: a new snapshot every 24 hours
        done = 0
        for message_id in self.mailbox.inbox(workflow_id=self.workflow_id):
            if self.handle(message_id) in ("answered", "rejected"):
                done += 1
        return done

    def run_forever(self, stop: threading.Event, poll_interval: float = 5.0) -> None:
        """Poll until ``stop`` is set: quickly after activity, backing off to ``poll_interval``."""
        backoff = Backoff(initial=min(0.5, poll_interval), maximum=poll_interval)
        while not stop.is_set():
            try:
                done = self.run_once()
            except TransportError as exc:  # sandbox restarted, network blip: keep polling
                log.warning("MESH unavailable: %s", exc.message)
                done = 0
            if done:
                backoff.reset()
                continue
            stop.wait(backoff.next())

    # ------------------------------------------------------------------ one message

    def handle(self, message_id: str) -> str:
        """Deal with one message; returns answered | rejected | ignored | duplicate | report."""
        if self.register.was_answered(message_id):
            log.info("request %s delivered again: already answered, acknowledging only", message_id)
            self.mailbox.acknowledge(message_id)
            return "duplicate"
        msg = self.mailbox.retrieve(message_id)
        if msg.is_report:
            log.info("MESH report %s (%s) acknowledged", message_id, msg.status_description or msg.status)
            self.register.mark_answered(message_id, local_id=msg.local_id, outcome="report")
            self.mailbox.acknowledge(message_id)
            return "report"
        subject, local_id = msg.subject or "", msg.local_id or ""
        if not (SAFE.fullmatch(subject) and SAFE.fullmatch(local_id)):
            # the real service never answers such a request; neither do we (but we say so here)
            log.warning(
                "request %s ignored: its Subject or LocalID is missing or holds characters other "
                "than letters, digits, - and _",
                message_id,
            )
            self.register.mark_answered(message_id, local_id=None, outcome="ignored")
            self.mailbox.acknowledge(message_id)
            return "ignored"
        numbers = parse_request(msg.body)
        if numbers is None:
            self._send(msg, REJECTION, subject=subject, filename=f"{local_id}_rejected.txt")
            self.register.mark_answered(message_id, local_id=local_id, outcome="rejected")
            self.mailbox.acknowledge(message_id)
            log.info(
                "request %s (LocalID %s) rejected: one or more invalid NHS numbers", message_id, local_id
            )
            return "rejected"
        kept, snapshot = self.register.answer_with_snapshot(numbers)
        note = {
            "status": "SUCCESS",
            "local_id": local_id,
            "request_message_id": message_id,
            "submitted": int(numbers.size),
            "returned": int(kept.size),
            "data_published_at": snapshot.published_at.isoformat(),
        }
        self._send(msg, json.dumps(note).encode(), subject="SUCCESS", filename=f"{local_id}_SUCCESS.json")
        self._send(msg, format_dat(kept), subject=subject, filename=f"{local_id}.dat")
        self.register.mark_answered(
            message_id,
            local_id=local_id,
            outcome="answered",
            submitted=int(numbers.size),
            returned=int(kept.size),
            snapshot_id=snapshot.id,
        )
        self.mailbox.acknowledge(message_id)
        log.info(
            "request %s (LocalID %s) answered: %d submitted, %d returned, snapshot %s",
            message_id,
            local_id,
            numbers.size,
            kept.size,
            snapshot.id,
        )
        return "answered"

    def _send(self, request: Received, data: bytes, *, subject: str, filename: str) -> str:
        return self.mailbox.send(
            recipient=str(request.sender),
            data=data,
            workflow_id=self.workflow_id,
            subject=subject,
            local_id=str(request.local_id),
            filename=filename,
        )
