"""The README's promises: every public name documented, the quickstart runs, and the FastAPI,
Flask and Django recipes verify real deliveries."""

from __future__ import annotations

import inspect
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import httpx
import pytest

import coverline_sdk
from coverline_sdk import Coverline

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def readme_block(after: str) -> str:
    """The first ```python block after the line containing `after`."""
    start = README.index(after)
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(README, start)
    assert match is not None, after
    return match.group(1)


def _public_methods(cls: type) -> Dict[str, Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


def test_every_public_name_is_documented() -> None:
    for name in coverline_sdk.__all__:
        assert f"`{name}" in README, f"{name} is not in the README"
        value = getattr(coverline_sdk, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__ and value.__doc__.strip(), f"{name} has no docstring"
    client = Coverline("http://x", "DEMO1", "k", "s")
    for resource_name, resource in vars(client).items():
        if not hasattr(resource, "_client"):
            continue
        assert f"`client.{resource_name}`" in README
        assert type(resource).__doc__
        for method_name, method in _public_methods(type(resource)).items():
            assert method.__doc__, f"{resource_name}.{method_name} has no docstring"
            assert f"{method_name}(" in README, f"{resource_name}.{method_name} is undocumented"
    for name in ("request", "close"):
        assert getattr(Coverline, name).__doc__ and f"{name}(" in README


@pytest.mark.slow
def test_the_quickstart_runs(server: Any, partner: Dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(readme_block("Save this as `quickstart.py`"), encoding="utf-8")
    env = {
        **os.environ,
        "COVERLINE_BASE_URL": server.base_url,
        "COVERLINE_PARTNER_CODE": partner["code"],
        "COVERLINE_API_KEY": partner["sandbox"]["api_key"],
        "COVERLINE_API_SECRET": partner["sandbox"]["api_secret"],
        "PYTHONIOENCODING": "utf-8",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        encoding="utf-8",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"Quote \w{5}-\w{5}-INS: Missed Event Cover \(Generic\), £\d+\.\d\d$", lines[0])
    assert re.match(r"Booking \w{5}-\w{5}-INS: CONFIRMED, £", lines[1])
    assert lines[2].startswith("Verified webhook BOOKING_CREATED for ")


# ----------------------------------------------------------------------------- the recipes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_recipe(name: str, secret: str) -> Dict[str, Any]:
    os.environ["COVERLINE_WEBHOOK_SECRET"] = secret
    try:
        namespace: Dict[str, Any] = {"__name__": f"recipe_{name}"}
        exec(compile(readme_block(f"### {name}"), f"README {name}", "exec"), namespace)
    finally:
        del os.environ["COVERLINE_WEBHOOK_SECRET"]
    return namespace


def _serve_fastapi(namespace: Dict[str, Any], port: int) -> Callable[[], None]:
    uvicorn = pytest.importorskip("uvicorn")
    server = uvicorn.Server(
        uvicorn.Config(namespace["app"], host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return stop


def _serve_wsgi(app: Any, port: int) -> Callable[[], None]:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = make_server("127.0.0.1", port, app, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()

    return stop


def _serve_flask(namespace: Dict[str, Any], port: int) -> Callable[[], None]:
    return _serve_wsgi(namespace["app"], port)


def _serve_django(namespace: Dict[str, Any], port: int) -> Callable[[], None]:
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.urls import path

    urls = types.ModuleType("sdk_recipe_urls")
    urls.urlpatterns = [path("coverline/webhooks", namespace["coverline_webhook"])]  # type: ignore[attr-defined]
    sys.modules["sdk_recipe_urls"] = urls
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="recipe-test",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="sdk_recipe_urls",
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
    return _serve_wsgi(get_wsgi_application(), port)


RECIPES: Dict[str, Tuple[str, Callable[[Dict[str, Any], int], Callable[[], None]]]] = {
    "FastAPI": ("fastapi", _serve_fastapi),
    "Flask": ("flask", _serve_flask),
    "Django": ("django", _serve_django),
}


@pytest.fixture
def recipe_endpoint(client: Coverline) -> Iterator[Tuple[Any, int]]:
    port = _free_port()
    endpoint = client.webhooks.create(
        f"http://127.0.0.1:{port}/coverline/webhooks",
        signature="standard",
        events=["BOOKING_CREATED"],
        retry_schedule=[1, 1],
    )
    yield endpoint, port
    client.webhooks.delete(endpoint.id)


@pytest.mark.slow
@pytest.mark.parametrize("framework", list(RECIPES))
def test_the_recipes_verify_real_deliveries(
    framework: str, client: Coverline, recipe_endpoint: Tuple[Any, int]
) -> None:
    package, serve = RECIPES[framework]
    pytest.importorskip(package)
    endpoint, port = recipe_endpoint
    namespace = _run_recipe(framework, endpoint.secret)
    stop = serve(namespace, port)
    try:
        url = f"http://127.0.0.1:{port}/coverline/webhooks"
        forged = httpx.post(
            url,
            content=b'{"event":"BOOKING_CREATED","payload":{}}',
            headers={"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time()))},
        )
        assert forged.status_code == 400

        sent = client.webhooks.test(endpoint.id)
        deadline = time.monotonic() + 30
        while True:
            delivery = client.webhooks.delivery(endpoint.id, sent.id)
            if delivery.status == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert delivery.status == "succeeded", delivery.attempts_log
        assert delivery.last_status_code == 204
    finally:
        stop()
