"""`coverline worker --metrics-port`: the worker's metrics over HTTP, on its own event loop.

aiohttp rather than prometheus_client's threaded server: the backlog gauges are read with the
worker's async database engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from coverline.observability import metrics
from coverline.observability.backlog import Backlog
from coverline.runtime import Services

log = logging.getLogger("coverline.metrics")


@asynccontextmanager
async def serving_metrics(services: Services, host: str, port: int) -> AsyncIterator[None]:
    backlog = Backlog(
        services.database, services.clock, services.settings.metrics_backlog_cache_seconds
    )

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition(
            request.headers.get("Accept", ""), await backlog.families()
        )
        return web.Response(body=body, headers={"Content-Type": content_type})

    application = web.Application()
    application.router.add_get("/metrics", scrape)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("worker metrics on http://%s:%d/metrics", host, port)
        yield
    finally:
        await runner.cleanup()
