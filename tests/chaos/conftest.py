"""The fault suite's deployment and its report.

One deployment for the whole suite, on a private PostgreSQL cluster (tests/fixtures/
postgres.py) that the suite may restart: two API processes (`coverline serve --no-worker`),
two `coverline worker` processes, Redis rate limits. Every scenario brings its own partner
and receivers, so that what it counts is its own.

Each scenario adds one row (fault, produced, delivered, duplicated, lost) to `RESULTS`,
before it asserts, so that a failing run reports too. At the end of the test run the rows
go to artifacts/reliability.json and artifacts/reliability.md, and the table is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.deployment import (
    ApiProcess,
    Deployment,
    Tally,
    WorkerProcess,
    deployment,
    missing_service,
)
from tests.fixtures.postgres import PrivateCluster, private_cluster
from tests.fixtures.server import REPO_ROOT

REDIS_URL = os.environ.get("COVERLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Longer than the hanging endpoint's timeout (a lease must outlast the send it covers),
# short enough that a killed worker's deliveries are due again within the scenario.
LEASE_SECONDS = 8
ARTIFACTS = REPO_ROOT / "artifacts"

RESULTS: list[Tally] = []


@dataclass
class Chaos:
    deployment: Deployment
    cluster: PrivateCluster
    apis: list[ApiProcess]
    workers: list[WorkerProcess]


@pytest.fixture(scope="session")
def cluster() -> Iterator[PrivateCluster]:
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(private_cluster())
        except (OSError, RuntimeError, KeyError, subprocess.SubprocessError) as exc:
            missing_service(f"a private PostgreSQL cluster could not be started: {exc}")
        yield started


@pytest.fixture(scope="session")
async def chaos(
    cluster: PrivateCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chaos]:
    async with deployment(
        tmp_path_factory.mktemp("chaos"),
        admin_url=cluster.admin_url,
        redis_url=REDIS_URL,
        env={"COVERLINE_WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS)},
    ) as running:
        apis = [running.api(), running.api()]
        workers = [running.worker(), running.worker()]
        await running.ready(*apis, *workers)
        yield Chaos(running, cluster, apis, workers)


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip() or "unknown"
    return f"{commit} + changes" if dirty.stdout.strip() else commit


def markdown(rows: list[Tally]) -> str:
    lines = [
        "| fault | events produced | delivered | duplicated | lost | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.fault} | {row.produced} | {row.delivered} | {row.duplicated} | "
            f"**{row.lost}** | {row.note} |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "rows": [row.as_dict() for row in RESULTS],
    }
    (ARTIFACTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(RESULTS)
    (ARTIFACTS / "reliability.md").write_text(
        f"Fault suite, {report['date']}, commit {report['commit']}\n\n{table}\n"
    )
    terminalreporter.section("fault suite: events produced, delivered, duplicated, lost")
    terminalreporter.write_line(f"{report['date']}, commit {report['commit']}")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"written to {Path(ARTIFACTS, 'reliability.json')} and .md")
