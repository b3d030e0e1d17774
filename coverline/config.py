"""Settings: one class, read from `COVERLINE_*` environment variables."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COVERLINE_", extra="ignore")

    data_dir: Path = Field(default_factory=Path.cwd)
    database_url: str | None = None
    redis_url: str | None = None
    # Fernet keys (url-safe base64, 32 bytes), comma-separated; the first encrypts, all decrypt.
    master_key: str | None = None

    public_url: str = "http://127.0.0.1:8000"
    signature_max_skew_seconds: int = 300
    rate_limit: str = "100/second"
    idempotency_ttl_hours: int = 48
    idempotency_lock_seconds: int = 60
    max_body_bytes: int = 1_000_000
    credential_cache_seconds: float = 5.0

    run_worker: bool = True
    webhooks_allow_private_networks: bool = False
    webhook_timeout_seconds: float = 15.0
    webhook_max_in_flight: int = 256
    webhook_per_endpoint_concurrency: int = 16
    webhook_poll_seconds: float = 0.02
    webhook_attempt_retention_days: int = 30
    webhook_disable_after_hours: float = 24.0
    webhook_disable_after_failures: int = 10

    log_level: str = "info"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'coverline.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


@cache
def get_settings() -> Settings:
    return Settings()
