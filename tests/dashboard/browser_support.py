"""Synchronous helpers for the browser tests: a webhook receiver on a background event loop,
Debian's Chromium through Playwright, screenshots, and calls to the partner API."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Page

from tests.fixtures.receiver import Answer, Received, Receiver, running_receiver
from tests.fixtures.server import REPO_ROOT, CoverlineServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}

T = TypeVar("T")


class LoopThread:
    """An asyncio loop of its own, in a thread, for async fixtures used by sync tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class SyncReceiver:
    """`tests.fixtures.receiver.Receiver`, read from synchronous code."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    @property
    def url(self) -> str:
        return self._receiver.url

    @property
    def received(self) -> list[Received]:
        return list(self._receiver.received)

    def answer(self, *answers: Answer) -> None:
        self._receiver.answer(*answers)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.received):
            if time.monotonic() > deadline:
                events = [r.json().get("event") for r in self.received]
                raise AssertionError(f"webhooks never arrived as expected; received {events}")
            time.sleep(0.05)

    def events(self) -> list[str]:
        return [str(r.json()["event"]) for r in self.received]


def start_receiver(loop: LoopThread) -> tuple[SyncReceiver, Any]:
    manager = running_receiver()
    receiver = loop.run(manager.__aenter__())
    return SyncReceiver(receiver), manager


def cli(server: CoverlineServer, args: list[str], stdin: str | None) -> str:
    """`coverline ARGS` with `stdin` piped in, or with no standard input at all."""
    result = subprocess.run(
        [sys.executable, "-m", "coverline", *args],
        env=server.env,
        cwd=server.data_dir,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def api(server: CoverlineServer, secret: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )


def screenshot(page: Page, name: str) -> None:
    """The page as it is now, desktop and phone width (the viewport is restored after)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    if original is not None:
        page.set_viewport_size(original)


def sign_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/dashboard/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def reload_until(page: Page, url: str, text: str, timeout: float = 30.0) -> None:
    """Open `url` again until `text` shows (work done by the server's background worker)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if text in page.content():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never showed on {url}")
        time.sleep(0.5)
