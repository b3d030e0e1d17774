"""No secret is readable in clear: not in the database, not in the logs.

A real `coverline serve` (API only) and a `coverline worker`, both at debug log level with
their output captured, get traffic that creates and uses every kind of secret: partners' API
secrets (issued, rotated through the API and the dashboard, replayed through idempotency
keys), webhook signing secrets (created, rotated, revealed, used to sign), dashboard passwords
(set, changed) and session tokens, and the SMTP password and Twilio token of the settings
(used to send a customer's e-mail and SMS to local servers that check them). Then the raw
bytes of the SQLite file and its WAL, or every row of every PostgreSQL table as text, and the
processes' output are searched for each secret, plain and base64- or hex-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.fernet import Fernet
from sqlalchemy import text

from coverline.db.engine import Database, normalise_url
from coverline.db.migrate import upgrade
from coverline.partners.crypto import SecretBox, load_or_create_key_file
from coverline.partners.signatures import encode_signature, sign
from tests.dashboard.helpers import csrf_of
from tests.fixtures.database import backend
from tests.fixtures.receiver import Receiver, running_receiver
from tests.fixtures.server import DEMO_CATALOG, CoverlineServer, free_port, running_server
from tests.fixtures.signing import signed_headers
from tests.messaging.conftest import MailHandler, SmsServer, gadget_request, sms_server

SMTP_USERNAME = "coverline-mailer"
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(24)
TWILIO_SID = "AC" + secrets.token_hex(16)
TWILIO_TOKEN = secrets.token_hex(16)
PASSWORD = "first-" + secrets.token_urlsafe(18)
NEW_PASSWORD = "second-" + secrets.token_urlsafe(18)
USER = "keeper@example.com"
CUSTOMER_EMAIL = f"secret.keeper.{secrets.token_hex(4)}@example.ng"

pytestmark = [
    pytest.mark.slow,
    # The local SMTP server takes the login over plain TCP on 127.0.0.1, as the test wants.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]


class CheckedLogins:
    """The SMTP server's authenticator: only Coverline's configured login gets in."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == (SMTP_USERNAME, SMTP_PASSWORD))


@dataclass
class Mailbox:
    handler: MailHandler
    logins: CheckedLogins
    port: int


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    handler = MailHandler()
    logins = CheckedLogins()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=logins,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield Mailbox(handler, logins, controller.port)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def twilio() -> AsyncIterator[SmsServer]:
    async with sms_server("twilio") as server:
        yield server


@pytest.fixture(scope="module")
async def hooks() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


@dataclass
class Processes:
    server: CoverlineServer
    worker_stdout: Path
    worker_stderr: Path

    def output(self) -> str:
        return "\n".join(
            [
                self.server.stdout(),
                self.server.stderr(),
                self.worker_stdout.read_text(errors="replace"),
                self.worker_stderr.read_text(errors="replace"),
            ]
        )


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    mailbox: Mailbox,
    twilio: SmsServer,
) -> Iterator[Processes]:
    tmp = tmp_path_factory.mktemp("secrets")
    env = {
        "COVERLINE_LOG_LEVEL": "debug",
        "COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true",
        "COVERLINE_WEBHOOK_POLL_SECONDS": "0.1",
        "COVERLINE_MESSAGE_POLL_SECONDS": "0.1",
        "COVERLINE_SMTP_HOST": "127.0.0.1",
        "COVERLINE_SMTP_PORT": str(mailbox.port),
        "COVERLINE_SMTP_TLS": "none",
        "COVERLINE_SMTP_USERNAME": SMTP_USERNAME,
        "COVERLINE_SMTP_PASSWORD": SMTP_PASSWORD,
        "COVERLINE_EMAIL_FROM": "cover@coverline.test",
        "COVERLINE_SMS_PROVIDER": "twilio",
        "COVERLINE_TWILIO_ACCOUNT_SID": TWILIO_SID,
        "COVERLINE_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "COVERLINE_TWILIO_FROM": "+15005550006",
        "COVERLINE_TWILIO_BASE_URL": twilio.url,
    }
    with running_server(tmp, args=["--no-worker"], env=env, request=request) as server:
        worker_stdout = tmp / "worker.stdout.log"
        worker_stderr = tmp / "worker.stderr.log"
        with worker_stdout.open("wb") as out, worker_stderr.open("wb") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "coverline", "worker"],
                env=server.env,
                cwd=server.data_dir,
                stdout=out,
                stderr=err,
            )
            try:
                yield Processes(server, worker_stdout, worker_stderr)
            finally:
                worker.terminate()
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=10)


@dataclass
class Traffic:
    """What the traffic made, and every secret it made or used."""

    code: str
    customer_email: str
    secrets: dict[str, str] = field(default_factory=dict)
    raw_secrets: dict[str, bytes] = field(default_factory=dict)


class Partner:
    def __init__(self, http: httpx.AsyncClient, code: str, key: str, secret: str) -> None:
        self.http, self.code, self.key, self.secret = http, code, key, secret

    async def call(
        self, method: str, relative: str, body: Any = None, idempotency_key: str | None = None
    ) -> httpx.Response:
        path = f"/api/partners/{self.code}/{relative}"
        headers = signed_headers(self.key, self.secret, method, path)
        if idempotency_key:
            headers["x-idempotency-key"] = idempotency_key
        return await self.http.request(method, path, json=body, headers=headers)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    """Wait for `check()` (a value or an awaitable of one) to be true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def form(http: httpx.AsyncClient, page: str, target: str, **fields: str) -> httpx.Response:
    """Post a dashboard form with the CSRF token of the page it is on."""
    shown = await http.get(page)
    return await http.post(target, data={"csrf_token": csrf_of(shown.text), **fields})


@pytest.fixture(scope="module")
async def traffic(
    processes: Processes, mailbox: Mailbox, twilio: SmsServer, hooks: Receiver
) -> Traffic:
    server = processes.server
    code = "SKEEP"
    # CLI processes spend most of their time starting: two at once, the third while the API
    # traffic runs.
    loaded, made_partner = await asyncio.gather(
        server.arun_cli(["catalog", "load", str(DEMO_CATALOG)]),
        server.arun_cli(["partner", "create", "--name", "Secret Keeper", "--code", code, "--json"]),
    )
    for result in (loaded, made_partner):
        assert result.returncode == 0, result.stderr
    made_user = asyncio.create_task(
        asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "coverline",
                "user",
                "create",
                "--partner",
                code,
                "--email",
                USER,
            ],
            env=server.env,
            cwd=server.data_dir,
            input=PASSWORD,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    )
    created = json.loads(made_partner.stdout)
    found = Traffic(created["code"], CUSTOMER_EMAIL)
    found.secrets.update(
        {
            "sandbox API secret": created["sandbox"]["api_secret"],
            "live API secret": created["live"]["api_secret"],
            "SMTP password": SMTP_PASSWORD,
            "Twilio token": TWILIO_TOKEN,
            "dashboard password": PASSWORD,
            "changed dashboard password": NEW_PASSWORD,
            "master key": server.master_key,
        }
    )
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        sandbox = Partner(
            http, found.code, created["sandbox"]["api_key"], created["sandbox"]["api_secret"]
        )
        live = Partner(http, found.code, created["live"]["api_key"], created["live"]["api_secret"])
        ok(await sandbox.call("GET", "bookings/"))
        bearer = {"Authorization": f"Bearer {live.secret}"}
        assert (
            await http.get(f"/api/partners/{found.code}/bookings/", headers=bearer)
        ).status_code == 200

        # A key rotation, and its stored response replayed through the idempotency key.
        rotated = ok(await sandbox.call("POST", "api_keys/", {}, "rotate-1"), 201)
        replayed = await sandbox.call("POST", "api_keys/", {}, "rotate-1")
        assert replayed.status_code == 409 and replayed.json() == rotated
        found.secrets["rotated API secret"] = rotated["api_secret"]

        # Webhook endpoints of every scheme; one rotated, one revealed.
        endpoints = {}
        for scheme in ("xcover", "standard", "mycover"):
            body = {"url": hooks.url, "signature": scheme, "retry_schedule": []}
            if scheme == "mycover":
                body["format"] = "mycover"
            endpoint = ok(await live.call("POST", "webhooks/", body, f"hook-{scheme}"), 201)
            endpoints[scheme] = endpoint
            if scheme != "mycover":
                found.secrets[f"{scheme} webhook secret"] = endpoint["secret"]
        xcover = endpoints["xcover"]
        turned = ok(await live.call("POST", f"webhooks/{xcover['id']}/rotate_secret", None, "turn"))
        found.secrets["rotated webhook secret"] = turned["secret"]
        revealed = ok(await live.call("GET", f"webhooks/{xcover['id']}/secret"))
        assert revealed["secret"] == turned["secret"]
        for name in [n for n in found.secrets if "webhook secret" in n]:
            key = found.secrets[name].removeprefix("whsec_")
            found.raw_secrets[name] = base64.b64decode(key)

        # A live booking: webhooks signed with those secrets, an e-mail and an SMS sent with
        # the settings' credentials.
        ok(await live.call("PUT", "messaging/settings", {"channels": ["email", "sms"]}))
        ok(await live.call("POST", "instant_booking/", gadget_request(CUSTOMER_EMAIL), "sell-1"))
        await until(lambda: len(hooks.received) >= 3, "three webhooks")
        await until(lambda: mailbox.handler.to(CUSTOMER_EMAIL), "the customer's e-mail")
        await until(lambda: twilio.requests, "the customer's SMS")

        # The dashboard: the CLI's user signs in, changes its password, makes a key.
        user_created = await made_user
        assert user_created.returncode == 0, user_created.stderr
        signed_in = await form(
            http, "/dashboard/sign-in", "/dashboard/sign-in", email=USER, password=PASSWORD
        )
        assert signed_in.status_code == 303, signed_in.text
        found.secrets["session token"] = http.cookies["coverline_session"]
        changed = await form(
            http,
            "/dashboard/account",
            "/dashboard/account/password",
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            confirm_password=NEW_PASSWORD,
        )
        assert changed.status_code == 303, changed.text
        keys = f"/dashboard/{found.code}/live/api-keys"
        issued = await form(http, keys, keys)
        assert issued.status_code == 200
        shown = re.findall(r"sk_live_[A-Za-z0-9_\-]+", issued.text)
        assert shown, "the new secret is shown once on the page"
        found.secrets["dashboard API secret"] = shown[0]
        revealed_page = await form(
            http, keys, f"/dashboard/{found.code}/live/webhooks/{xcover['id']}/secret"
        )
        assert turned["secret"] in revealed_page.text
        # The worker has recorded its sends (and logged their SQL) before anything is read.
        for endpoint in endpoints.values():

            async def delivered(endpoint: dict[str, Any] = endpoint) -> bool:
                listed = ok(await live.call("GET", f"webhooks/{endpoint['id']}/deliveries/"))
                return any(d["status"] == "succeeded" for d in listed["results"])

            await until(delivered, f"a delivery to {endpoint['id']} recorded")
    return found


def encodings(secret: str | bytes) -> set[bytes]:
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = {raw, raw.hex().encode(), raw.hex().upper().encode()}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        forms |= {encoded, encoded.rstrip(b"=")}
    return {form for form in forms if len(form) >= 12}


def found_in(haystack: bytes, traffic: Traffic) -> list[str]:
    named: dict[str, str | bytes] = {**traffic.secrets, **traffic.raw_secrets}
    return sorted(
        name
        for name, secret in named.items()
        if any(form in haystack for form in encodings(secret))
    )


async def database_bytes(server: CoverlineServer) -> bytes:
    if backend() == "sqlite":
        path = Path(server.database_url.split(":///", 1)[1])
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert path.exists()
        return b"".join(f.read_bytes() for f in files if f.exists())
    connection = await asyncpg.connect(normalise_url(server.database_url).replace("+asyncpg", ""))
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        dumped = []
        for table in tables:
            rows = await connection.fetch(
                f'SELECT CAST(t AS text) AS row FROM "{table["table_name"]}" AS t'
            )
            dumped += [row["row"] for row in rows]
        assert len(tables) > 20
        return "\n".join(dumped).encode()
    finally:
        await connection.close()


async def test_no_secret_is_stored_in_clear(processes: Processes, traffic: Traffic) -> None:
    stored = await database_bytes(processes.server)
    # The search reads real data: the customer's address is stored, as it must be.
    assert traffic.customer_email.encode() in stored
    assert found_in(stored, traffic) == []


async def test_no_secret_is_in_the_logs(processes: Processes, traffic: Traffic) -> None:
    logged = processes.output()
    worker = processes.worker_stderr.read_text(errors="replace")
    # The output of both processes was captured at debug level: the API's access log and the
    # worker's lines (the drivers' statement logs stay capped, tests/observability/test_logs.py).
    assert f"POST /api/partners/{traffic.code}/instant_booking/" in logged
    assert '"level":"info"' in worker
    assert found_in(logged.encode(), traffic) == []


async def test_the_secrets_were_in_use(
    traffic: Traffic, mailbox: Mailbox, twilio: SmsServer, hooks: Receiver
) -> None:
    """The control: each secret searched for did its work in those processes."""
    assert mailbox.logins.logins[0] == (SMTP_USERNAME, SMTP_PASSWORD)
    authorization = twilio.requests[0].headers["Authorization"]
    assert base64.b64decode(authorization.removeprefix("Basic ")).decode() == (
        f"{TWILIO_SID}:{TWILIO_TOKEN}"
    )
    xcover = next(r for r in hooks.received if "Authorization" in r.headers)
    signature = re.search(r'signature="([^"]+)"', xcover.headers["Authorization"])
    assert signature is not None
    expected = sign(
        traffic.secrets["rotated webhook secret"], "hmac-sha256", f"date: {xcover.headers['Date']}"
    )
    assert signature.group(1) == encode_signature(expected)
    assert any("webhook-signature" in r.headers for r in hooks.received)


def test_the_generated_master_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master.key"
    key = load_or_create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key_file(path) == key
    box = SecretBox([key])
    assert box.decrypt(box.encrypt("sk_live_x")) == "sk_live_x"


@pytest.mark.sqlite
async def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Its rows hold customers' names, e-mail addresses and phone numbers: a permissive umask
    does not make the file, its WAL or its shared memory readable by other local users."""
    url = f"sqlite:///{tmp_path}/coverline.db"
    previous = os.umask(0o022)
    try:
        await upgrade(url)
        database = Database(url)
        try:
            async with database.transaction() as session:
                await session.execute(text("DELETE FROM idempotency_keys"))
            modes = {path.name: path.stat().st_mode & 0o777 for path in sorted(tmp_path.iterdir())}
        finally:
            await database.dispose()
    finally:
        os.umask(previous)
    assert modes == {
        "coverline.db": 0o600,
        "coverline.db-shm": 0o600,
        "coverline.db-wal": 0o600,
    }
    # A file that exists keeps its mode: the operator may have chosen another.
    existing = tmp_path / "shared.db"
    existing.touch(mode=0o640)
    existing.chmod(0o640)
    await upgrade(f"sqlite:///{existing}")
    assert existing.stat().st_mode & 0o777 == 0o640


def test_a_new_master_key_still_reads_what_the_old_one_sealed() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = SecretBox([old]).encrypt("whsec_before")
    rotated = SecretBox([new, old])
    assert rotated.decrypt(sealed) == "whsec_before"
    resealed = rotated.encrypt("whsec_after")
    assert SecretBox([new]).decrypt(resealed) == "whsec_after"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox([old]).decrypt(resealed)
