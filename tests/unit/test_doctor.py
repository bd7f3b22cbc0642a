"""``optout.doctor`` pieces on their own: pluggable checks, the database-TLS rule, secrets in
optout.toml, and a home that does not exist yet (clean, and not created)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from optout import doctor
from optout.config import Settings


def test_a_home_not_made_yet_is_clean_and_not_made(tmp_path: Path) -> None:
    report = doctor.run(Settings(home=tmp_path / "home", actor="t"), env={}, config_file=tmp_path / "none")
    assert report.ok and report.exit_code == 0, report.findings
    assert not (tmp_path / "home").exists()


def test_checks_plug_in(tmp_path: Path) -> None:
    @doctor.register_check("web-test", "a front end's own settings")
    def web(ctx: doctor.Context) -> Iterator[doctor.Finding | doctor.Note]:
        yield doctor.Finding("web-test", "web-secret-key", doctor.ERROR, "no secret key set", "set one")

    try:
        with pytest.raises(ValueError):
            doctor.register_check("web-test", "twice")(web)
        report = doctor.run(Settings(home=tmp_path, actor="t"), env={}, config_file=tmp_path / "none")
        assert [f.code for f in report.findings] == ["web-secret-key"] and report.exit_code == 1
        assert "web-test" in doctor.check_names()
    finally:
        doctor._CHECKS[:] = [c for c in doctor._CHECKS if c.name != "web-test"]


def test_the_web_app_plugin_is_optional() -> None:
    assert "optout.web.doctor" in doctor.PLUGINS
    doctor._load_plugins()  # no web app yet: nothing to load, no error


@pytest.mark.parametrize(
    ("url", "env", "finding"),
    [
        ("sqlite:///x.db", {}, False),
        ("postgresql+psycopg://u@db.example.org/optout", {}, True),
        ("postgresql+psycopg://u@db.example.org/optout?sslmode=prefer", {}, True),
        ("postgresql+psycopg://u@db.example.org/optout?sslmode=disable", {}, True),
        ("postgresql+psycopg://u@db.example.org/optout?sslmode=require", {}, False),
        ("postgresql+psycopg://u@db.example.org/optout?sslmode=verify-full", {}, False),
        ("postgresql+psycopg://u@db.example.org/optout", {"PGSSLMODE": "verify-full"}, False),
        ("postgresql+psycopg://u@127.0.0.1/optout", {}, False),
        ("postgresql+psycopg://u@localhost:5433/optout", {}, False),
        ("postgresql+psycopg://u@[::1]/optout", {}, False),
        ("postgresql+psycopg://u@/optout?host=/var/run/postgresql", {}, False),
        ("postgresql+psycopg://u@/optout", {}, False),
        ("postgresql+psycopg://u@/optout", {"PGHOST": "db.example.org"}, True),
    ],
)
def test_postgresql_needs_tls_to_another_host(url: str, env: dict[str, str], finding: bool) -> None:
    assert (doctor._db_without_tls(url, env) is not None) is finding


@pytest.mark.parametrize(
    ("toml", "found"),
    [
        ('[mesh]\nurl = "https://mesh"\nmailbox = "X26ORG001"\n', []),
        ('[mesh]\npassword = "p"\n', ["mesh.password"]),
        ('[mesh]\nshared_key = "k"\nclient_key = "/etc/optout/mesh.key"\n', ["mesh.shared_key"]),
        ('[cache]\nkey = "abc"\nkey_file = "/etc/optout/cache.key"\n', ["cache.key"]),
        ('[store]\nurl = "postgresql+psycopg://u:pw@db/x"\n', ["store.url"]),
        ('[store]\nurl = "postgresql+psycopg://u@db/x"\n', []),
        ('[web]\nsecret_key = "x"\n', ["web.secret_key"]),
    ],
)
def test_secrets_in_optout_toml(toml: str, found: list[str]) -> None:
    import tomllib

    assert list(doctor._secrets_in(tomllib.loads(toml))) == found
