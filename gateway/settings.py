"""Settings: ``config.yaml`` or an existing ``langgraph.json``, parsed once into frozen values.

``config.yaml`` keys (all optional but ``graphs``)::

    graphs: {chat_agent: ./examples/chat_agent.py:graph}
    env: .env                    # KEY=VALUE file loaded into os.environ (existing keys win)
    data_dir: ./data             # SQLite files; "memory" keeps everything in memory
    bridge: memory               # or sqlite: every event also kept in data_dir/events.sqlite;
                                 # or redis (the default when redis_url is set)
    database_url: null           # postgresql://user@host:port/db: threads, runs and
                                 # checkpoints in PostgreSQL instead of data_dir
    redis_url: null              # redis://host:port/db: run streams in Redis
    redis_key_prefix: "gw:"      # every key the gateway writes starts with it
    lease_s: 30                  # with both URLs: a running run's lease; a dead owner's run
                                 # runs again elsewhere within 2 x lease_s + 2 s
    host: 127.0.0.1
    port: 8123
    max_concurrent_runs: 32
    max_attempts: 3
    stream_retention_s: 120
    max_events_per_run: 10000
    max_log_mb_per_run: 64       # payload megabytes kept per run log (and per thread log)
    ping_interval_s: 5
    shutdown_timeout_s: 10
    max_body_mb: 25              # largest request body in megabytes; larger -> 413 (nginx.conf)
    cors: {allow_origins: ["*"], allow_headers: []}

A ``langgraph.json`` contributes ``graphs`` and ``env`` (a file path or a mapping). Relative paths
resolve against the config file's folder. Environment overrides: ``GATEWAY_DATA_DIR``,
``GATEWAY_HOST``, ``GATEWAY_PORT``, ``GATEWAY_MAX_CONCURRENT_RUNS``, ``GATEWAY_BRIDGE``,
``GATEWAY_MAX_BODY_MB``, ``GATEWAY_DATABASE_URL``, ``GATEWAY_REDIS_URL``,
``GATEWAY_REDIS_KEY_PREFIX``, ``GATEWAY_LEASE_S``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.cron_schemas import cron_run_spec
from runtime.bridge.protocol import BridgeLimits
from runtime.core import RuntimeConfig
from runtime.spec import RunLimits
from runtime.webhooks.policy import UrlPolicy
from runtime.webhooks.sender import WebhookConfig


class SettingsError(Exception):
    """The configuration file is missing or invalid; the message names the file and field."""


class CorsSettings(BaseModel):
    """CORS for browser clients (``useStream`` on another origin)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    allow_origins: list[str] = Field(default_factory=lambda: ["*"])
    allow_headers: list[str] = Field(default_factory=list)


class Settings(BaseModel):
    """The parsed configuration (frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    graphs: dict[str, str]
    env: str | dict[str, str] | None = None
    data_dir: str = "./data"
    bridge: Literal["memory", "sqlite", "redis"] | None = None  # None: redis if redis_url
    database_url: str | None = Field(None, pattern=r"^postgres(ql)?://")
    redis_url: str | None = Field(None, pattern=r"^rediss?://")
    redis_key_prefix: str = Field("gw:", min_length=1, max_length=64)
    lease_s: float = Field(30.0, ge=1.0, le=3600.0)
    host: str = "127.0.0.1"
    port: int = Field(8123, ge=0, le=65535)
    max_concurrent_runs: int = Field(32, ge=1)
    max_attempts: int = Field(3, ge=1)
    stream_retention_s: float = Field(120.0, ge=0)
    max_events_per_run: int = Field(10_000, ge=10)
    max_log_mb_per_run: float = Field(64.0, gt=0)
    ping_interval_s: float = Field(5.0, gt=0)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    # the same default as client_max_body_size in nginx.conf, so a body nginx passes is never
    # refused here; enforced by gateway.limits.BodyLimit before the body is read
    max_body_mb: float = Field(25.0, gt=0)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    # run webhooks, as langgraph.json's ``webhooks`` and ``http.disable_webhooks``
    webhooks: dict[str, Any] | None = None
    http: dict[str, Any] | None = None
    # {api_keys: [...], path: "./auth.py:auth"} (gateway/auth/)
    auth: dict[str, Any] | None = None
    base_dir: Path = Path(".")

    def api_keys(self) -> tuple[str, ...]:
        """The API keys (gateway/auth/api_keys.py): ``auth.api_keys`` (``${{ env.NAME }}`` templates
        filled) plus ``GATEWAY_API_KEYS`` (comma-separated). Empty: no authentication.

        Raises:
            SettingsError: a template names an unset variable, or ``api_keys`` is not a list.
        """
        listed = (self.auth or {}).get("api_keys") or []
        if not isinstance(listed, list):
            raise SettingsError("auth.api_keys: must be a list of keys")
        keys = [_template(str(k), "", "auth.api_keys") for k in listed]
        keys += [k.strip() for k in os.environ.get("GATEWAY_API_KEYS", "").split(",")]
        return tuple(k for k in keys if k)

    def auth_path(self) -> str | None:
        """``auth.path``: the user's ``langgraph_sdk.Auth`` object (gateway/auth/custom.py),
        ``"./auth.py:auth"`` relative to the config file's folder or ``"pkg.module:auth"``;
        None without one. ``disable_studio_auth``, ``openapi`` and ``cache`` are accepted and
        ignored (this gateway has no Studio bypass to disable).

        Raises:
            SettingsError: ``path`` is not a string.
        """
        path = (self.auth or {}).get("path")
        if path is not None and not isinstance(path, str):
            raise SettingsError("auth.path: must be a string like './auth.py:auth'")
        return path or None

    def webhook_config(self) -> WebhookConfig:
        """The resolved webhook settings: ``webhooks.headers`` with ``${{ env.NAME }}``
        templates filled from the environment (only names with ``webhooks.env_prefix``,
        default ``LG_WEBHOOK_``), ``webhooks.url`` (runtime/webhooks/policy.py),
        ``webhooks.signing_secret`` (a template too), ``webhooks.max_attempts``, and
        ``http.disable_webhooks``.

        Raises:
            SettingsError: a template names a variable that is unset or lacks the prefix.
        """
        block = dict(self.webhooks or {})
        prefix = str(block.get("env_prefix", "LG_WEBHOOK_"))
        headers = {str(k): _template(str(v), prefix) for k, v in
                   (block.get("headers") or {}).items()}
        secret = block.get("signing_secret")
        return WebhookConfig(
            headers=headers,
            policy=UrlPolicy.from_config(block.get("url")),
            signing_secret=_template(str(secret), prefix) if secret else None,
            max_attempts=int(block.get("max_attempts", 3)),
            disabled=bool((self.http or {}).get("disable_webhooks", False)),
        )

    @model_validator(mode="after")
    def _engines(self) -> Settings:
        if self.bridge == "redis" and not self.redis_url:
            raise ValueError("bridge: redis needs redis_url")
        if self.bridge == "sqlite" and self.database_url:
            raise ValueError("bridge: sqlite keeps events in data_dir; with database_url use "
                             "redis (redis_url) or memory")
        return self

    @property
    def bridge_kind(self) -> str:
        """The bridge in use: the ``bridge`` key, else ``redis`` with ``redis_url``, else
        ``memory``."""
        return self.bridge or ("redis" if self.redis_url else "memory")

    def runtime_config(self) -> RuntimeConfig:
        """The runtime's part of the settings."""
        data_dir = None if self.data_dir == "memory" or self.database_url else (
            self.base_dir / self.data_dir)
        return RuntimeConfig(
            graphs=dict(self.graphs),
            base_dir=self.base_dir,
            data_dir=data_dir,
            bridge=BridgeLimits(self.max_events_per_run, self.stream_retention_s,
                                round(self.max_log_mb_per_run * 1024 * 1024)),
            limits=RunLimits(
                max_concurrent_runs=self.max_concurrent_runs,
                handle_retention_s=self.stream_retention_s,
                shutdown_timeout_s=self.shutdown_timeout_s,
            ),
            max_attempts=self.max_attempts,
            bridge_kind=self.bridge_kind,
            database_url=self.database_url,
            redis_url=self.redis_url,
            redis_key_prefix=self.redis_key_prefix,
            lease_s=self.lease_s,
            cron_run_spec=cron_run_spec,
            webhooks=self.webhook_config(),
        )


_TEMPLATE = re.compile(r"\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _template(value: str, prefix: str, where: str = "webhooks") -> str:
    """``value`` with each ``${{ env.NAME }}`` replaced by the variable (which must start with
    ``prefix`` and be set); ``where`` names the setting in errors. Raises SettingsError."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(prefix):
            raise SettingsError(f"{where}: ${{{{ env.{name} }}}} does not start with the "
                                f"env_prefix {prefix!r}")
        if name not in os.environ:
            raise SettingsError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _TEMPLATE.sub(fill, value)


def _load_env_file(path: Path) -> None:
    if not path.is_file():
        raise SettingsError(f"env file {path} does not exist")
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip().removeprefix("export "), value.strip().strip("'\""))


_ENV_OVERRIDES = {
    "GATEWAY_DATA_DIR": "data_dir",
    "GATEWAY_HOST": "host",
    "GATEWAY_PORT": "port",
    "GATEWAY_MAX_CONCURRENT_RUNS": "max_concurrent_runs",
    "GATEWAY_BRIDGE": "bridge",
    "GATEWAY_DATABASE_URL": "database_url",
    "GATEWAY_REDIS_URL": "redis_url",
    "GATEWAY_REDIS_KEY_PREFIX": "redis_key_prefix",
    "GATEWAY_LEASE_S": "lease_s",
    "GATEWAY_MAX_BODY_MB": "max_body_mb",
}


def load_settings(path: Path | str = "config.yaml", **overrides: Any) -> Settings:
    """Read ``path`` (YAML, or JSON for ``*.json`` such as ``langgraph.json``).

    ``overrides`` (e.g. ``host``, ``port`` from the command line) win over environment
    variables, which win over the file. Loads the ``env`` file into ``os.environ``.

    Raises:
        SettingsError: missing file, bad syntax, or an invalid field (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    if path.suffix == ".json":  # langgraph.json: keep what we understand
        raw = {k: raw[k] for k in ("graphs", "env", "webhooks", "http", "auth") if k in raw}
    for env_name, key in _ENV_OVERRIDES.items():
        if os.environ.get(env_name):
            raw[key] = os.environ[env_name]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    raw["base_dir"] = path.resolve().parent
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"{path}: {where}: {first['msg']}") from exc
    if isinstance(settings.env, str):
        _load_env_file(settings.base_dir / settings.env)
    elif isinstance(settings.env, dict):
        for key, value in settings.env.items():
            os.environ.setdefault(key, str(value))
    settings.webhook_config()  # a header template naming an unset variable fails here
    settings.api_keys()
    return settings
