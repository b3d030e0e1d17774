from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

Format = Literal["xcover", "mycover"]
Scheme = Literal["xcover", "mycover", "standard"]
# Up to a Svix-length schedule: 8 retries, none later than a day after the previous one.
RetrySchedule = list[float]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
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

    url: AnyHttpUrl | None = None
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
