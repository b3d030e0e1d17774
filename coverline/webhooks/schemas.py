from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from coverline.kit.http import ResponseBody

Format = Literal["xcover", "mycover"]
Scheme = Literal["xcover", "mycover", "standard"]
# Up to a Svix-length schedule: 8 retries, none later than a day after the previous one.
RetrySchedule = list[float]
# The column's length, which the URL must fit as it is stored (normalised, percent-encoded).
MAX_URL = 2048


def _fits(value: AnyHttpUrl) -> AnyHttpUrl:
    if len(str(value)) > MAX_URL:
        raise ValueError(f"A URL of at most {MAX_URL} characters (percent-encoded).")
    return value


WebhookUrl = Annotated[AnyHttpUrl, AfterValidator(_fits)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl
    description: str | None = Field(default=None, max_length=300)
    enabled: bool = True
    events: list[str] | None = Field(default=None, description="Event names; null for all.")
    format: Format = "xcover"
    signature: Scheme | None = Field(
        default=None, description="Defaults to the scheme of the format."
    )
    retry_schedule: RetrySchedule | None = Field(
        default=None,
        min_length=0,
        max_length=8,
        description="Seconds before each retry; default about 30 s, 5 min, 30 min.",
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=30)
    max_concurrency: int | None = Field(default=None, ge=1, le=256)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: RetrySchedule | None) -> RetrySchedule | None:
        return check_schedule(value)


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=300)
    enabled: bool | None = None
    events: list[str] | None = None
    format: Format | None = None
    signature: Scheme | None = None
    retry_schedule: RetrySchedule | None = Field(default=None, max_length=8)
    timeout_seconds: float | None = Field(default=None, gt=0, le=30)
    max_concurrency: int | None = Field(default=None, ge=1, le=256)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: RetrySchedule | None) -> RetrySchedule | None:
        return check_schedule(value)


def check_schedule(schedule: RetrySchedule | None) -> RetrySchedule | None:
    for delay in schedule or []:
        if not 0 < delay <= 86_400:
            raise ValueError("Each retry delay is more than 0 and at most 86400 seconds.")
    return schedule


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime


class EndpointOut(ResponseBody):
    id: str
    url: str
    description: str | None
    enabled: bool
    events: list[str] | None
    format: str
    signature: str
    mode: str
    retry_schedule: list[float] | None
    timeout_seconds: float | None
    max_concurrency: int | None
    disabled_reason: str | None
    failing_since: str | None
    created_at: str
    updated_at: str


class SigningMaterialOut(ResponseBody):
    key: str | None = Field(description="The key id receivers see; null for MyCover signatures.")
    secret: str


class EndpointWithSecretOut(EndpointOut, SigningMaterialOut):
    pass


class RotatedEndpointOut(EndpointWithSecretOut):
    previous_secret_expires_at: str | None


class EndpointSecretOut(SigningMaterialOut):
    id: str
    signature: str


class EndpointListOut(ResponseBody):
    count: int
    results: list[EndpointOut]


class DeliveryOut(ResponseBody):
    id: str
    event: str
    event_id: str
    resource_id: str | None
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    completed_at: str | None


class AttemptOut(ResponseBody):
    attempted_at: str
    duration_ms: int | None
    status_code: int | None
    request_headers: dict[str, Any] | None
    response_excerpt: str | None
    error: str | None


class DeliveryDetailOut(DeliveryOut):
    payload: dict[str, Any]
    attempts_log: list[AttemptOut]


class DeliveryListOut(ResponseBody):
    count: int
    results: list[DeliveryOut]


class RedeliveryOut(ResponseBody):
    id: str
    status: str


class RecoveryOut(ResponseBody):
    recovered: int
