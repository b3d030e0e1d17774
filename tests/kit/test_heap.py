"""A serving process freezes what its start-up made, so that full collections do not walk it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from coverline.app import create_app
from coverline.config import Settings
from coverline.runtime import Services


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    # The test process goes on collecting everything, as before.
    gc.unfreeze()


async def test_an_app_that_builds_its_services_freezes_them_at_start(
    settings: Settings, unfrozen: None
) -> None:
    app = create_app(settings.model_copy(update={"run_worker": False}))
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        # Everything alive at start-up, the services the app built among them, is out of the
        # generations that collections walk.
        built = app.state.services
        assert gc.get_freeze_count() > 0
        assert not any(obj is built for obj in gc.get_objects())
        assert gc.is_tracked(built)


async def test_an_app_given_its_services_leaves_the_collector_alone(
    services: Services, settings: Settings, unfrozen: None
) -> None:
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
        assert any(obj is services for obj in gc.get_objects())
