"""A register as the tool left it under rules 1 (schema 0002, before decisions recorded their rules
version): for tests of ``reassess_all`` and ``optout flow list --reassess``."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from optout.store import _alembic_config

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

NDRS: dict[str, Any] = {  # tumour records to NHS England's NDRS, described with today's names
    "name": "Tumour records to the NDRS",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential"},
    "purpose": ["cancer-registration"],
    "legal_basis": ["s251"],
    "approvals": ["PIAG 03(a)/2001"],
    "recipient": {"name": "NHS England (NDRS)", "type": "nhs-england", "role": "third-party"},
}
RESEARCH: dict[str, Any] = {
    "name": "Heart failure study",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential"},
    "purpose": ["research"],
    "legal_basis": ["s251"],
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
}


def _sha(facts: dict[str, Any]) -> str:  # as the register hashes the stored facts
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def old_register(path: Path) -> str:
    """A register as the tool left it under rules 1 (schema 0002): the NDRS flow was told 'applies'
    ('recipient.type is nhs-england, it needs public-health-england')."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    stamp = T0.isoformat()
    rows = [
        ("ndrs-tumours", NDRS, "applies", "opt-out-applied", None),
        ("hf-study", RESEARCH, "applies", "opt-out-applied", None),
    ]
    with engine.begin() as conn:
        for flow_id, facts, decision, compliance, exemption in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO flows (id, name, facts, decision, compliance, exemption, review_date, "
                    "version, facts_sha256, created_at, updated_at) VALUES (:id, :name, :facts, :d, :c, "
                    ":e, '2027-03-01', 1, :sha, :t, :t)"
                ),
                {
                    "id": flow_id,
                    "name": facts["name"],
                    "facts": json.dumps(facts),
                    "d": decision,
                    "c": compliance,
                    "e": exemption,
                    "sha": _sha(facts),
                    "t": stamp,
                },
            )
            conn.execute(
                sa.text(
                    "INSERT INTO flow_versions (flow_id, version, facts, decision, facts_sha256, "
                    "changed_at, changed_by) VALUES (:id, 1, :facts, :d, :sha, :t, 'dpo')"
                ),
                {"id": flow_id, "facts": json.dumps(facts), "d": decision, "sha": _sha(facts), "t": stamp},
            )
    engine.dispose()
    return url
