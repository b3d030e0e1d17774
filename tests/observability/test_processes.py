"""Real processes: `coverline serve --workers 2` (one scrape reports both processes) and
`coverline worker --metrics-port`, their JSON logs at debug level, and request ids from the
partner's request to the webhook attempts a separate worker made."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.metrics import Samples
from tests.fixtures.payloads import instant_booking_request, policyholder, ticket_item
from tests.fixtures.receiver import Answer, Receiver, running_receiver
from tests.fixtures.server import CoverlineServer, free_port, running_server
from tests.fixtures.signing import signed_headers

pytestmark = pytest.mark.slow

HEALTH = (
    "coverline_http_requests_total",
    frozenset({("method", "GET"), ("route", "/healthz"), ("status", "200")}),
)
MARKER = secrets.token_hex(6)
CUSTOMER_EMAIL = f"ada.{MARKER}@example.org"
CUSTOMER_NAME = f"Adaeze{MARKER}"
EVENT_NAME = f"Concert {MARKER}"
PASSWORD = f"pw-{MARKER}-not-logged"


@dataclass
class Deployment:
    server: CoverlineServer
    partner: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.partner["code"])

    @property
    def secret(self) -> str:
        return str(self.partner["sandbox"]["api_secret"])

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    env = {
        "COVERLINE_LOG_LEVEL": "debug",
        "COVERLINE_LOG_FORMAT": "json",
        "COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
    }
    # --demo: the catalogue and a partner in the server's own start, no CLI run of their own.
    with running_server(
        tmp_path_factory.mktemp("observed"),
        args=["--demo", "--workers", "2", "--no-worker"],
        env=env,
        request=request,
    ) as server:
        printed = server.stdout()
        credentials, _ = json.JSONDecoder().raw_decode(printed, printed.index("{"))
        yield Deployment(server, credentials)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        parsed = json.loads(line)
        assert isinstance(parsed, dict), line
        assert {"ts", "level", "logger", "message", "pid"} <= parsed.keys(), line
        lines.append(parsed)
    return lines


def access_lines(text: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(text) if line["logger"] == "coverline.access"]


def wait_for_lines(
    server: CoverlineServer, wanted: set[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """The access lines of the requests with these ids, once each process has written them
    (a request is counted just before its line is written)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {
            line["request_id"]: line
            for line in access_lines(server.stderr())
            if line.get("request_id") in wanted
        }
        if found.keys() == wanted:
            return found
        assert time.monotonic() < deadline, f"missing access lines: {wanted - found.keys()}"
        time.sleep(0.05)


def fresh_get(url: str, **headers: str) -> httpx.Response:
    """A new connection for each request, so that either process may accept it."""
    with httpx.Client(timeout=10.0) as client:
        return client.get(url, headers=headers)


def test_a_scrape_of_either_process_reports_the_sum_of_both(deployment: Deployment) -> None:
    server = deployment.server
    # The fixture's own start-up probes of /healthz are counted too.
    baseline = Samples.parse(fresh_get(server.base_url + "/metrics").text).values[HEALTH]
    sent: set[str] = set()
    pids: set[int] = set()
    while len(pids) < 2:
        assert len(sent) < 400, "every request went to one process"
        for _ in range(10):
            request_id = f"probe-{len(sent)}"
            assert (
                fresh_get(server.base_url + "/healthz", **{"X-Request-Id": request_id}).status_code
                == 200
            )
            sent.add(request_id)
        pids = {line["pid"] for line in wait_for_lines(server, sent).values()}

    answered_by: set[int] = set()
    for attempt in range(60):
        scrape_id = f"scrape-{attempt}"
        response = fresh_get(server.base_url + "/metrics", **{"X-Request-Id": scrape_id})
        assert response.status_code == 200
        assert Samples.parse(response.text).values[HEALTH] == baseline + len(sent)
        answered_by.add(wait_for_lines(server, {scrape_id})[scrape_id]["pid"])
        if answered_by == pids and attempt >= 3:
            break
    assert answered_by == pids


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    metrics_url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def scrape(self) -> Samples:
        with httpx.Client(timeout=10.0) as client:
            response = client.get(self.metrics_url)
        assert response.status_code == 200
        return Samples.parse(response.text)


@pytest.fixture(scope="module")
def worker(deployment: Deployment) -> Iterator[WorkerProcess]:
    server = deployment.server
    port = free_port()
    logs = server.data_dir.parent
    stdout, stderr = logs / "worker.stdout.log", logs / "worker.stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "coverline", "worker", "--metrics-port", str(port)],
            env=server.env,
            cwd=server.data_dir,
            stdout=out,
            stderr=err,
        )
    started = WorkerProcess(process, stdout, stderr, f"http://127.0.0.1:{port}/metrics")
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, stderr.read_text()
        try:
            if httpx.get(started.metrics_url, timeout=2.0).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (
            f"the worker's metrics never answered\n{stderr.read_text()}"
        )
        time.sleep(0.1)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


async def test_a_worker_counts_its_attempts_and_writes_the_request_id_on_them(
    deployment: Deployment, worker: WorkerProcess, receiver: Receiver
) -> None:
    server = deployment.server
    async with httpx.AsyncClient(base_url=server.partner_url(deployment.code), timeout=30.0) as api:
        created = await api.post(
            "webhooks/",
            json={"url": receiver.url, "retry_schedule": [0.2]},
            headers=deployment.bearer(),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["id"]
        receiver.answer(Answer(status=500))
        booked = await api.post(
            "instant_booking/",
            json=instant_booking_request(),
            headers={**deployment.bearer(), "X-Request-Id": "obs-booking-1"},
        )
        assert booked.status_code == 200, booked.text
        assert booked.headers["x-request-id"] == "obs-booking-1"
        await receiver.wait_for(2, timeout=30)

        deadline = time.monotonic() + 30
        while True:
            samples = await asyncio.to_thread(worker.scrape)
            if samples.get(
                "coverline_webhook_attempts_total", format="xcover", outcome="succeeded"
            ):
                break
            assert time.monotonic() < deadline, "the worker never counted the success"
            await asyncio.sleep(0.05)
        outcomes = {
            dict(labels)["outcome"]: value
            for labels, value in samples.labelled("coverline_webhook_attempts_total").items()
            if dict(labels)["format"] == "xcover"
        }
        assert outcomes == {"succeeded": 1, "retry": 1, "failed": 0}

        listed = await api.get(f"webhooks/{endpoint}/deliveries/", headers=deployment.bearer())
        (delivery,) = listed.json()["results"]
        detail = await api.get(
            f"webhooks/{endpoint}/deliveries/{delivery['id']}/", headers=deployment.bearer()
        )
    assert detail.json()["request_id"] == "obs-booking-1"
    assert [a["request_id"] for a in detail.json()["attempts_log"]] == ["obs-booking-1"] * 2

    # The API processes run no worker: they never counted an attempt.
    api_samples = Samples.parse(
        (await asyncio.to_thread(fresh_get, server.base_url + "/metrics")).text
    )
    assert sum(api_samples.labelled("coverline_webhook_attempts_total").values()) == 0
    line = wait_for_lines(server, {"obs-booking-1"})["obs-booking-1"]
    assert (line["method"], line["route"], line["status"]) == (
        "POST",
        "/api/partners/{partner_code}/instant_booking/",
        200,
    )
    assert (line["partner"], line["mode"]) == (deployment.code, "sandbox")
    assert json_lines(worker.stderr.read_text())


async def test_no_secret_or_personal_data_reaches_the_logs_at_debug_level(
    deployment: Deployment, worker: WorkerProcess
) -> None:
    server = deployment.server
    code = deployment.code
    sandbox = deployment.partner["sandbox"]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as http:
        path = f"/api/partners/{code}/bookings/"
        signed = signed_headers(sandbox["api_key"], sandbox["api_secret"], "GET", path)
        assert (await http.get(path, headers=signed)).status_code == 200
        created = await http.post(
            f"/api/partners/{code}/webhooks/",
            json={"url": "http://127.0.0.1:9/hooks", "retry_schedule": []},
            headers=deployment.bearer(),
        )
        assert created.status_code == 201
        endpoint_secret = created.json()["secret"]
        revealed = await http.get(
            f"/api/partners/{code}/webhooks/{created.json()['id']}/secret",
            headers=deployment.bearer(),
        )
        assert revealed.json()["secret"] == endpoint_secret
        holder = policyholder(email=CUSTOMER_EMAIL, first_name=CUSTOMER_NAME)
        booked = await http.post(
            f"/api/partners/{code}/instant_booking/",
            json=instant_booking_request(ticket_item(event_name=EVENT_NAME), policyholder=holder),
            headers={**deployment.bearer(), "X-Idempotency-Key": f"idem-{MARKER}"},
        )
        assert booked.status_code == 200, booked.text
        page = await http.get("/dashboard/sign-in")
        csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
        assert csrf is not None
        signed_in = await http.post(
            "/dashboard/sign-in",
            data={"csrf_token": csrf.group(1), "email": CUSTOMER_EMAIL, "password": PASSWORD},
        )
        assert signed_in.status_code == 401
        refused = await http.get(
            path, headers={"Authorization": f"Bearer {sandbox['api_secret']}x"}
        )
        assert refused.status_code == 401
    # Let the worker try (and fail) the new endpoint's delivery, signed with its secret.
    deliveries = server.partner_url(code, f"webhooks/{created.json()['id']}/deliveries/")
    deadline = time.monotonic() + 30
    while True:
        listed = await asyncio.to_thread(httpx.get, deliveries, headers=deployment.bearer())
        if [d["status"] for d in listed.json()["results"]] == ["failed"]:
            break
        assert time.monotonic() < deadline, listed.json()
        await asyncio.sleep(0.1)

    # The logs are on stderr; `serve --demo` prints the demo credentials on stdout on purpose.
    logs = "\n".join((server.stderr(), worker.stderr.read_text(), worker.stdout.read_text()))
    for private in (
        sandbox["api_secret"],
        deployment.partner["live"]["api_secret"],
        endpoint_secret,
        server.master_key,
        CUSTOMER_EMAIL,
        CUSTOMER_NAME,
        EVENT_NAME,
        PASSWORD,
        MARKER,
        "Bearer",
        "Signature keyId",
    ):
        assert private not in logs, private
    assert access_lines(server.stderr())


def test_every_line_the_api_writes_on_stderr_is_a_json_log_line(deployment: Deployment) -> None:
    lines = json_lines(deployment.server.stderr())
    assert {"uvicorn.error", "coverline.access"} <= {line["logger"] for line in lines}
    assert {line["level"] for line in lines} <= {"debug", "info", "warning", "error", "critical"}


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _multiprocess_directory(pid: int) -> Path:
    for child in _children(pid):
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(os.fsdecode(entry.split(b"=", 1)[1]))
    raise AssertionError("no API process has a multiprocess directory")


def test_stopping_the_server_removes_its_metrics_directory(deployment: Deployment) -> None:
    server = deployment.server
    directory = _multiprocess_directory(server.process.pid)
    assert directory.name.startswith("coverline-metrics-")
    assert sorted(path.name.split("_")[0] for path in directory.iterdir()) == sorted(
        ["counter", "counter", "histogram", "histogram"]
    )
    server.stop()
    assert server.process.returncode is not None
    assert not directory.exists()
