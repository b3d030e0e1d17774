"""Settings: one class, read from `COVERLINE_*` environment variables."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Numbers a deployment sets: every one has a range, so a negative TTL, a zero poll interval or
# `inf` is refused when read (with the variable's name), not met later as a worker that spins,
# an idempotency key that never stores or a timedelta that overflows.
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
CacheSeconds = Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]
Hours = Annotated[float, Field(gt=0, le=24 * 366 * 10, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=1_000_000)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COVERLINE_", extra="ignore")

    data_dir: Path = Field(default_factory=Path.cwd)
    database_url: str | None = None
    redis_url: str | None = None
    # Fernet keys (url-safe base64, 32 bytes), comma-separated; the first encrypts, all decrypt.
    master_key: str | None = None

    public_url: str = "http://127.0.0.1:8000"
    signature_max_skew_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300
    rate_limit: str = "100/second"
    idempotency_ttl_hours: Annotated[int, Field(ge=1, le=24 * 366)] = 48
    idempotency_lock_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    max_body_bytes: Annotated[int, Field(ge=1_024, le=1_000_000_000)] = 1_000_000
    credential_cache_seconds: CacheSeconds = 5.0

    run_worker: bool = True
    webhooks_allow_private_networks: bool = False
    webhook_timeout_seconds: Seconds = 15.0
    webhook_lease_seconds: Seconds = 90.0
    webhook_max_in_flight: Count = 256
    webhook_per_endpoint_concurrency: Count = 16
    webhook_poll_seconds: Seconds = 0.1
    webhook_idle_poll_seconds: Seconds = 0.5
    # Most deliveries one worker leases for one endpoint at a time.
    webhook_batch_size: Count = 256
    webhook_attempt_retention_days: Annotated[int, Field(ge=1, le=3_660)] = 30
    webhook_disable_after_hours: Hours = 24.0
    webhook_disable_after_failures: Count = 10

    # Customer messaging (docs/messaging.md): SMTP for e-mail, one SMS provider.
    smtp_host: str | None = None
    # 587 for starttls, 465 for tls, 25 for none.
    smtp_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout_seconds: Seconds = 30.0
    email_from: str | None = None
    sms_provider: Literal["twilio", "africastalking"] | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    africastalking_username: str | None = None
    africastalking_api_key: str | None = None
    africastalking_from: str | None = None
    africastalking_base_url: str = "https://api.africastalking.com"
    message_max_attempts: Count = 5
    message_retry_base_seconds: Seconds = 30.0
    message_lease_seconds: Seconds = 90.0
    message_poll_seconds: Seconds = 0.2
    message_max_in_flight: Count = 16
    message_expiry_hours: Hours = 24.0

    # Mark dashboard cookies Secure even when a proxy terminates TLS and forwards plain HTTP.
    dashboard_secure_cookies: bool = False
    dashboard_session_hours: Hours = 12.0

    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    # auto: text on a terminal (the README's first command), JSON otherwise (a service).
    log_format: Literal["auto", "json", "text"] = "auto"

    # Prometheus metrics (docs/operations.md): GET /metrics on the API; a port of its own for
    # `coverline worker`.
    metrics_enabled: bool = True
    metrics_backlog_cache_seconds: CacheSeconds = 5.0
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    # Wrong settings are refused when read, with the variable's name, not met later as a
    # failure of every request.
    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None:
            scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
            if scheme not in {"sqlite", "postgresql", "postgres"}:
                raise ValueError("use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and value.split(":", 1)[0].lower() not in {"redis", "rediss", "unix"}:
            raise ValueError("use redis://HOST:PORT/DB (or rediss://, unix://)")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError: "couldn't parse rate limit string …"
        return value

    @field_validator("master_key")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value is not None:
            from cryptography.fernet import Fernet

            for part in (part.strip() for part in value.split(",")):
                if part:
                    try:
                        Fernet(part.encode())
                    except ValueError:
                        raise ValueError(
                            "each key must be 32 url-safe base64-encoded bytes "
                            "(python -c 'from cryptography.fernet import Fernet; "
                            "print(Fernet.generate_key().decode())')"
                        ) from None
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'coverline.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"tls": 465, "starttls": 587}.get(self.smtp_tls, 25)


@cache
def get_settings() -> Settings:
    return Settings()
