"""The sandbox test clock (`GET/POST /api/partners/{code}/sandbox/clock`). Live credentials
get 404: live time is real time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.catalog.definition import parse_duration
from coverline.kit.dates import parse_rfc3339, server_time
from coverline.kit.errors import NotFound, ValidationFailed
from coverline.kit.http import PartnerRouter, ResponseBody
from coverline.partners.deps import PartnerCall, partner_call
from coverline.renewals.service import run_due
from coverline.sandbox.service import (
    ahead,
    current_offset,
    out_of_calendar,
    refused_move,
    set_offset,
)

router = PartnerRouter(tags=["sandbox"])
MAX_TRANSITIONS = 100_000


class ClockMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance: str | None = Field(default=None, description="An ISO 8601 duration, e.g. P30D.")
    to: str | None = Field(default=None, description="An RFC 3339 date-time in the future.")


class ClockOut(ResponseBody):
    now: str
    offset_seconds: float


class TransitionOut(ResponseBody):
    event: str
    renewal_id: str
    booking_id: str
    at: str


class ClockMovedOut(ClockOut):
    transitions: list[TransitionOut]


def _sandbox_only(call: PartnerCall) -> None:
    if call.principal.mode != "sandbox":
        raise NotFound("Not found.")


def _clock_json(call: PartnerCall, offset: timedelta) -> dict[str, Any]:
    return {
        "now": server_time(call.services.clock.now() + offset),
        "offset_seconds": offset.total_seconds(),
    }


@router.get("/sandbox/clock", response_model=ClockOut, summary="The sandbox test clock")
async def get_clock(call: PartnerCall = Depends(partner_call)) -> Response:
    _sandbox_only(call)

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _clock_json(call, await current_offset(session, call.principal.partner_id))

    return await call.read(work)


@router.post(
    "/sandbox/clock", response_model=ClockMovedOut, summary="Move the sandbox test clock forward"
)
async def move_clock(data: ClockMove, call: PartnerCall = Depends(partner_call)) -> Response:
    _sandbox_only(call)
    if (data.advance is None) == (data.to is None):
        raise ValidationFailed(errors={"advance": ["Give exactly one of 'advance' and 'to'."]})

    async def work(session: AsyncSession) -> tuple[int, Any]:
        partner_id = call.principal.partner_id
        real_now = call.services.clock.now()
        offset = await current_offset(session, partner_id)
        current = real_now + offset
        if data.advance is not None:
            try:
                duration = parse_duration(data.advance)
            except ValueError as exc:
                raise ValidationFailed(errors={"advance": [str(exc)]}) from None
            target = ahead(current, duration)
        else:
            assert data.to is not None
            try:
                target = parse_rfc3339(data.to)
            except ValueError:
                problem = out_of_calendar(data.to) or f"'{data.to}' is not an RFC 3339 date-time."
                raise ValidationFailed(errors={"to": [problem]}) from None
        refused = refused_move(target, current, real_now)
        if refused is not None:
            raise ValidationFailed(errors={"advance" if data.advance else "to": [refused]})
        new_offset = target - real_now
        await set_offset(session, partner_id, new_offset, real_now)
        transitions = []
        while batch := await run_due(session, until=target, partner_id=partner_id):
            transitions += batch
            if len(transitions) > MAX_TRANSITIONS:
                break
        return 200, {
            **_clock_json(call, new_offset),
            "transitions": [
                {
                    "event": t.type.value,
                    "renewal_id": t.renewal_id,
                    "booking_id": t.package_id,
                    "at": server_time(t.at),
                }
                for t in transitions
            ],
        }

    response = await call.write(work)
    call.services.clocks.forget()
    return response
