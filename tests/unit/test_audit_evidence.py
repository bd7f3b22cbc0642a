"""Evidence packs (``optout audit export``): JSON content, readable HTML, suppression, atomicity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from optout import audit
from optout.audit import evidence
from optout.errors import OutputError, UsageError
from optout.store import Store, check_requests, disclosures, flows, releases

T = "2026-03-{:02d}T10:00:00.000000+00:00"


class Text(HTMLParser):
    """Collects visible text per section id."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.text: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs).get("id")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.section = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self.section:
            self.text[self.section] = self.text.get(self.section, "") + " " + data.strip()


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'ev.db'}")
    with s.begin() as c:
        c.execute(
            flows.insert().values(
                id="crane-submission",
                name="CRANE quarterly submission",
                recipient="CRANE (RCS England)",
                purpose="national-clinical-audit",
                legal_basis="s251",
                facts={},
                decision="applies",
                compliance="opt-out-applied",
                review_date="2027-01-01",
                version=2,
                created_at=T.format(1),
                updated_at=T.format(2),
            )
        )
        c.execute(
            releases.insert().values(
                id="rel-on-time",
                flow_id="crane-submission",
                flow_version=2,
                state="disclosed",
                created_at=T.format(5),
                checked_at=T.format(4),
                check_source="one-off",
                deadline=T.format(24),
                details={},
            )
        )
        c.execute(
            releases.insert().values(
                id="rel-late",
                state="disclosed",
                created_at=T.format(6),
                checked_at=T.format(1),
                check_source="cache",
                deadline=T.format(14),
                details={},
            )
        )
        c.execute(
            releases.insert().values(
                id="rel-old", state="expired", created_at="2025-01-01T00:00:00+00:00", details={}
            )
        )
        c.execute(
            disclosures.insert().values(release_id="rel-on-time", recipient="CRANE", disclosed_at=T.format(7))
        )
        c.execute(
            disclosures.insert().values(release_id="rel-late", recipient="ICB", disclosed_at=T.format(20))
        )
        c.execute(
            check_requests.insert().values(
                local_id="chk-1",
                mode="one-off",
                state="collected",
                created_at=T.format(4),
                sent_count=1200,
                returned_count=3,
                cohort_size=1200,
                details={},
            )
        )
    audit.record(s, "flow.added", actor="ig", subject="crane-submission", at=T.format(2))
    audit.record(
        s, "check.sent", actor="analyst", subject="chk-1", details={"sent_count": 1200}, at=T.format(4)
    )
    audit.record(
        s,
        "check.collected",
        actor="analyst",
        subject="chk-1",
        details={"returned_count": 3, "version": 2},
        at=T.format(4).replace("10:00", "11:00"),
    )
    audit.record(s, "cache.refreshed", actor="analyst", details={"cohort_size": 2, "days": 3}, at=T.format(5))
    audit.record(s, "release.prepared", actor="analyst", subject="rel-on-time", details={"rows_removed": 0})
    audit.record(s, "release.disclosed", actor="ig", subject="rel-on-time", at=T.format(7))
    audit.record(s, "release.disclosed", actor="ig", subject="rel-late", at=T.format(20))
    audit.record(s, "cache.read", actor="x", at="2026-04-02T00:00:00.000000+00:00")  # outside the period
    return s


def export(store: Store, out: Path, **kw: object) -> evidence.EvidencePack:
    return evidence.export_evidence(
        store,
        start=evidence.parse_bound("2026-03-01", option="--from"),
        end=evidence.parse_bound("2026-03-31", option="--to", end=True),
        out_dir=out,
        actor="ig-lead",
        now=datetime(2026, 4, 3, tzinfo=UTC),
        **kw,  # type: ignore[arg-type]
    )


def test_evidence_json_has_entries_chain_summary_and_releases(store: Store, tmp_path: Path) -> None:
    pack = export(store, tmp_path / "pack")
    data = json.loads(pack.json_path.read_text())
    assert data["format"] == "optout-evidence/1"
    # release.prepared was recorded "now" (not in March 2026), cache.read is in April
    assert [e["action"] for e in data["entries"]] == [
        "flow.added",
        "check.sent",
        "check.collected",
        "cache.refreshed",
        "release.disclosed",
        "release.disclosed",
    ]
    assert data["summary"]["by_action"] == {
        "cache.refreshed": 1,
        "check.collected": 1,
        "check.sent": 1,
        "flow.added": 1,
        "release.disclosed": 2,
    }
    assert data["chain"]["ok"] is True
    assert data["head"]["seq"] == 8
    assert [r["id"] for r in data["releases"]] == ["rel-on-time", "rel-late"]
    late = data["releases"][1]["disclosures"][0]
    assert late["within_deadline"] is False and late["recipient"] == "ICB"
    assert data["releases"][0]["disclosures"][0]["within_deadline"] is True
    assert data["summary"]["late_disclosures"] == 1
    assert [f["id"] for f in data["flows"]] == ["crane-submission"]
    assert [x["action"] for x in data["flow_changes"]] == ["flow.added"]
    # the export is itself recorded, after the head it reports
    last = audit.entries(store)[-1]
    assert last.action == "audit.exported" and last.details_dict["evidence_json_sha256"] == pack.json_sha256
    assert last.details_dict["head_seq"] == 8


def test_counts_of_people_under_5_are_suppressed_in_external_packs(store: Store, tmp_path: Path) -> None:
    data = export(store, tmp_path / "ext").data
    by_action = {e["action"]: e["details"] for e in data["entries"]}
    assert by_action["check.collected"] == {"returned_count": "<5", "version": 2}  # version is not people
    assert by_action["cache.refreshed"] == {"cohort_size": "<5", "days": 3}
    assert by_action["check.sent"] == {"sent_count": 1200}
    assert data["checks"][0]["returned_count"] == "<5" and data["checks"][0]["sent_count"] == 1200
    internal = export(store, tmp_path / "int", report_for="internal").data
    assert {e["action"]: e["details"] for e in internal["entries"]}["check.collected"]["returned_count"] == 3


def test_suppress_is_fail_closed_and_leaves_zero_alone() -> None:
    assert evidence.suppress({"anything": 4, "zero": 0, "big": 5, "flag": True, "days": 2}) == {
        "anything": "<5",
        "zero": 0,
        "big": 5,
        "flag": True,
        "days": 2,
    }
    assert evidence.suppress({"per_table": [{"rows": 1}, {"rows": 9}]}) == {
        "per_table": [{"rows": "<5"}, {"rows": 9}]
    }


def test_html_report_is_readable_and_has_the_key_content(store: Store, tmp_path: Path) -> None:
    pack = export(store, tmp_path / "pack")
    p = Text()
    p.feed(pack.html_path.read_text())
    assert "2026-03-01 to 2026-03-31" in p.title
    assert {"chain", "summary", "releases", "checks", "flows", "entries"} <= set(p.text)
    assert "Intact." in p.text["chain"] and pack.data["head"]["hash"] in p.text["chain"]
    assert "rel-late" in p.text["releases"] and "after the deadline" in p.text["releases"]
    assert "to CRANE on 2026-03-07" in p.text["releases"]
    assert "chk-1" in p.text["checks"] and "cache.refreshed" in p.text["checks"]
    assert "<5" in p.text["checks"]  # parsed text: the escaped &lt;5 reads as <5
    assert "CRANE quarterly submission" in p.text["flows"] and "opt-out-applied" in p.text["flows"]
    assert "release.disclosed" in p.text["summary"]


def test_html_escapes_what_it_shows(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    audit.record(s, "flow.added", actor="<script>alert(1)</script>", at=T.format(2))
    pack = export(s, tmp_path / "pack")
    html = pack.html_path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_tampered_trail_is_reported_in_the_pack(store: Store, tmp_path: Path) -> None:
    from tests.support.tamper import open_for_tampering

    con = open_for_tampering(store.url.removeprefix("sqlite:///"))
    con.execute("update audit_log set actor='mallory' where seq=2")
    con.commit()
    con.close()
    pack = export(store, tmp_path / "pack")
    assert pack.data["chain"]["ok"] is False
    assert pack.data["chain"]["first_problem"]["seq"] == 2
    p = Text()
    p.feed(pack.html_path.read_text())
    assert "NOT intact" in p.text["chain"] and "seq 2" in p.text["chain"]


def test_output_is_atomic_and_not_overwritten_without_force(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "pack"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError):
        export(store, out)
    assert sorted(x.name for x in out.iterdir()) == ["keep.txt"]
    export(store, out, force=True)
    assert sorted(x.name for x in out.iterdir()) == ["evidence.html", "evidence.json"]
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-03-01", False, datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-31", True, datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-03-31T17:00:00Z", True, datetime(2026, 3, 31, 17, tzinfo=UTC)),
        ("2026-03-31T18:00:00+01:00", False, datetime(2026, 3, 31, 17, tzinfo=UTC)),
    ],
)
def test_parse_bound(text: str, end: bool, expected: datetime) -> None:
    assert evidence.parse_bound(text, option="--to", end=end) == expected


@pytest.mark.parametrize("bad", ["31/03/2026", "yesterday", "2026-13-01"])
def test_parse_bound_rejects_non_dates(bad: str) -> None:
    with pytest.raises(UsageError):
        evidence.parse_bound(bad, option="--from")


def test_to_before_from_is_a_usage_error(store: Store) -> None:
    with pytest.raises(UsageError):
        evidence.build_evidence(
            store, start=datetime(2026, 3, 2, tzinfo=UTC), end=datetime(2026, 3, 1, tzinfo=UTC)
        )
