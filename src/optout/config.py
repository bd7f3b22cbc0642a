"""Settings: embedded defaults, then ``optout.toml``, then the environment (highest wins).

Secrets (MESH password, shared key, cache key) come only from the environment or from files the
environment points at, never from ``optout.toml``, so the file can be committed or shared.

``optout.toml`` is looked for in the current directory, or where ``OPTOUT_CONFIG`` points:

    [store]
    url = "sqlite:///.optout/optout.db"     # or postgresql+psycopg://user@host/db

    [mesh]
    url = "https://msg.intspineservices.nhs.uk"
    mailbox = "X26ABC123"
    recipient = "X26HC065"                   # the national check service's mailbox
    workflow_id = "SPINE_NTT_UPHOLDING"
    client_cert = "/etc/optout/mesh.crt"     # optional, with client_key and ca_bundle
    client_key = "/etc/optout/mesh.key"
    ca_bundle = "/etc/optout/nhs-ca.pem"

    [cache]
    path = ".optout/cache"
    key_file = "/etc/optout/cache.key"       # or OPTOUT_CACHE_KEY (base64, 32 bytes)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optout.errors import UsageError
from optout.text import ACTOR_FIELD, ACTOR_HINT, guard_free_text

DEFAULT_HOME = Path(".optout")
DEFAULT_RECIPIENT = "X26HC065"
WORKFLOW_ID = "SPINE_NTT_UPHOLDING"


@dataclass
class MeshSettings:
    url: str | None = None
    mailbox: str | None = None
    password: str | None = None
    shared_key: str | None = None
    recipient: str = DEFAULT_RECIPIENT
    workflow_id: str = WORKFLOW_ID
    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None


@dataclass
class Settings:
    home: Path = DEFAULT_HOME
    store_url: str | None = None
    mesh: MeshSettings = field(default_factory=MeshSettings)
    cache_path: Path | None = None
    cache_key_file: Path | None = None
    actor: str = field(default_factory=lambda: os.environ.get("OPTOUT_ACTOR") or _whoami())

    @property
    def db_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.home / 'optout.db').as_posix()}"

    @property
    def cache_dir(self) -> Path:
        return self.cache_path or (self.home / "cache")


def _whoami() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database in some containers
        return "unknown"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path.name} is not valid TOML: {exc}", hint=f"fix the syntax in {path}") from None


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    path = config_file or (Path(env["OPTOUT_CONFIG"]) if env.get("OPTOUT_CONFIG") else Path("optout.toml"))
    data: dict[str, Any] = _read_toml(path) if path.is_file() else {}
    s = Settings()
    if env.get("OPTOUT_HOME"):
        s.home = Path(env["OPTOUT_HOME"])
    elif data.get("home"):
        s.home = Path(data["home"])
    store = data.get("store", {})
    s.store_url = env.get("OPTOUT_DB_URL") or store.get("url")
    mesh = data.get("mesh", {})
    s.mesh = MeshSettings(
        url=env.get("OPTOUT_MESH_URL") or mesh.get("url"),
        mailbox=env.get("OPTOUT_MESH_MAILBOX") or mesh.get("mailbox"),
        password=env.get("OPTOUT_MESH_PASSWORD"),
        shared_key=env.get("OPTOUT_MESH_SHARED_KEY"),
        recipient=env.get("OPTOUT_MESH_RECIPIENT") or mesh.get("recipient") or DEFAULT_RECIPIENT,
        workflow_id=env.get("OPTOUT_MESH_WORKFLOW") or mesh.get("workflow_id") or WORKFLOW_ID,
        client_cert=env.get("OPTOUT_MESH_CLIENT_CERT") or mesh.get("client_cert"),
        client_key=env.get("OPTOUT_MESH_CLIENT_KEY") or mesh.get("client_key"),
        ca_bundle=env.get("OPTOUT_MESH_CA_BUNDLE") or mesh.get("ca_bundle"),
    )
    cache = data.get("cache", {})
    if env.get("OPTOUT_CACHE_DIR") or cache.get("path"):
        s.cache_path = Path(env.get("OPTOUT_CACHE_DIR") or cache["path"])
    if env.get("OPTOUT_CACHE_KEY_FILE") or cache.get("key_file"):
        s.cache_key_file = Path(env.get("OPTOUT_CACHE_KEY_FILE") or cache["key_file"])
    guard_free_text(ACTOR_FIELD, s.actor, error=UsageError, hint=ACTOR_HINT)  # stored and printed
    return s
