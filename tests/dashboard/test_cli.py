"""`coverline user create`: a piped password, or a one-time password printed once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

MASTER_KEY = Fernet.generate_key().decode()


def coverline(tmp: Path, args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERLINE_")}
    env.update(
        COVERLINE_DATA_DIR=str(tmp),
        COVERLINE_DATABASE_URL=f"sqlite:///{tmp / 'cli.db'}",
        COVERLINE_MASTER_KEY=MASTER_KEY,
    )
    return subprocess.run(
        [sys.executable, "-m", "coverline", *args],
        env=env,
        cwd=tmp,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    created = coverline(tmp, ["partner", "create", "--name", "Cli", "--code", "CLI01"], None)
    assert created.returncode == 0, created.stderr
    return tmp


def test_a_piped_password_is_used_and_never_printed(data: Path) -> None:
    result = coverline(
        data,
        ["user", "create", "--partner", "cli01", "--email", "Piped@Example.com"],
        "a-piped-password\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Dashboard user of partner CLI01 piped@example.com created."
    assert "a-piped-password" not in result.stdout + result.stderr


def test_without_input_a_one_time_password_is_printed(data: Path) -> None:
    result = coverline(data, ["user", "create", "--operator", "--email", "ops@example.com"], None)
    assert result.returncode == 0, result.stderr
    assert re.search(r"One-time password .*: \S{20}", result.stdout)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--partner", "NOPE1", "--email", "x@example.com"], "long-enough-pw", "Unknown partner"),
        (["--partner", "CLI01", "--email", "y@example.com"], "short", "at least 10"),
        (["--email", "z@example.com"], "long-enough-pw", "needs a partner"),
    ],
)
def test_refused_users_are_explained(data: Path, args: list[str], stdin: str, message: str) -> None:
    result = coverline(data, ["user", "create", *args], stdin)
    assert result.returncode == 1
    assert message in result.stderr
