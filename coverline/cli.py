"""`coverline`: serve, migrate, partners and the catalogue, for operators and scripts."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from coverline.config import Settings, get_settings
from coverline.kit.text import is_storable

app = typer.Typer(help="Coverline: embedded-insurance platform.", no_args_is_help=True)
partner_app = typer.Typer(help="Partners and their API keys.", no_args_is_help=True)
catalog_app = typer.Typer(help="Products and their versions.", no_args_is_help=True)
app.add_typer(partner_app, name="partner")
app.add_typer(catalog_app, name="catalog")
user_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(user_app, name="user")

DEMO_CATALOG = Path(__file__).parent / "catalog" / "demo" / "catalog.yaml"
DEMO_PARTNER_CODE = "DEMO1"


def display_url(url: str) -> str:
    """A database URL fit to print: its password masked."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _configure_logging(settings: Settings) -> None:
    from coverline.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def _migrate(settings: Settings) -> None:
    from coverline.db.migrate import upgrade

    if settings.database_url is None:  # the default SQLite file: its directory is made
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(upgrade(settings.resolved_database_url))


async def _with_services(settings: Settings, work: Any) -> Any:
    from coverline.runtime import Services

    services = Services.build(settings)
    try:
        return await work(services)
    finally:
        await services.close()


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _error_text(exc: Any) -> str:
    """A CoverlineError as a line: its message and its field errors."""
    return f"{exc.message} {json.dumps(exc.errors) if exc.errors else ''}".strip()


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    settings = get_settings()
    _migrate(settings)
    typer.echo(f"Database at {display_url(settings.resolved_database_url)} is up to date.")


async def _load_catalog(settings: Settings, path: Path) -> list[Any]:
    from coverline.catalog.definition import load_catalog_file
    from coverline.catalog.service import load_catalog

    document = load_catalog_file(path)

    async def work(services: Any) -> list[Any]:
        async with services.database.transaction() as session:
            return await load_catalog(session, document, services.clock.now())

    result: list[Any] = await _with_services(settings, work)
    return result


@catalog_app.command("load")
def catalog_load(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Load product definitions (YAML or JSON). Changed products get a new version."""
    from coverline.catalog.definition import CatalogError

    settings = get_settings()
    _migrate(settings)
    try:
        loaded = asyncio.run(_load_catalog(settings, file))
    except CatalogError as exc:
        _fail(str(exc))  # it names the file
        return
    if not loaded:
        typer.echo(f"{file} lists no products: nothing to load.")
    for product in loaded:
        state = "new version" if product.created else "unchanged"
        typer.echo(
            f"{product.policy_type} v{product.policy_type_version}: revision "
            f"{product.revision} ({product.version_id}) {state}"
        )


def _credentials_json(code: str, issued: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": code,
        **{
            mode: {"api_key": cred.api_key, "api_secret": cred.api_secret}
            for mode, cred in issued.items()
        },
    }


async def _create_partner(settings: Settings, name: str, code: str | None) -> dict[str, Any]:
    from coverline.partners.service import create_partner

    async def work(services: Any) -> dict[str, Any]:
        async with services.database.transaction() as session:
            partner, issued = await create_partner(
                session, services.box, name=name, code=code, now=services.clock.now()
            )
        return _credentials_json(partner.code, issued)

    result: dict[str, Any] = await _with_services(settings, work)
    return result


@partner_app.command("create")
def partner_create(
    name: Annotated[str, typer.Option("--name", help="The partner's name.")],
    code: Annotated[str | None, typer.Option("--code", help="5 upper-case letters/digits.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a partner with sandbox and live credentials (the secrets are shown once)."""
    from coverline.kit.errors import CoverlineError

    settings = get_settings()
    _migrate(settings)
    try:
        created = asyncio.run(_create_partner(settings, name, code))
    except CoverlineError as exc:
        _fail(_error_text(exc))
        return
    if as_json:
        typer.echo(json.dumps(created))
        return
    typer.echo(f"Partner {created['code']} created.")
    for mode in ("sandbox", "live"):
        typer.echo(f"  {mode}: api_key={created[mode]['api_key']}")
        typer.echo(f"  {mode}: api_secret={created[mode]['api_secret']}")


async def _rotate(settings: Settings, code: str, mode: str) -> dict[str, Any]:
    from coverline.partners.service import get_partner, issue_credential

    async def work(services: Any) -> dict[str, Any]:
        async with services.database.transaction() as session:
            partner = await get_partner(session, code)
            issued = await issue_credential(
                session, services.box, partner, mode, services.clock.now()
            )
        return {
            "code": partner.code,
            mode: {"api_key": issued.api_key, "api_secret": issued.api_secret},
        }

    result: dict[str, Any] = await _with_services(settings, work)
    return result


@partner_app.command("rotate-key")
def partner_rotate_key(
    code: Annotated[str, typer.Option("--code")],
    mode: Annotated[str, typer.Option("--mode", help="sandbox or live")] = "sandbox",
) -> None:
    """Issue a new key for a mode; the old key stays valid until revoked."""
    from coverline.kit.errors import CoverlineError

    settings = get_settings()
    _migrate(settings)
    try:
        typer.echo(json.dumps(asyncio.run(_rotate(settings, code, mode))))
    except CoverlineError as exc:
        _fail(_error_text(exc))


async def _revoke(settings: Settings, code: str, api_key: str) -> None:
    from coverline.partners.service import get_partner, revoke_credential

    async def work(services: Any) -> None:
        async with services.database.transaction() as session:
            partner = await get_partner(session, code)
            await revoke_credential(session, partner, api_key, services.clock.now())

    await _with_services(settings, work)


@partner_app.command("revoke-key")
def partner_revoke_key(
    code: Annotated[str, typer.Option("--code")],
    api_key: Annotated[str, typer.Option("--api-key")],
) -> None:
    """Revoke an API key."""
    from coverline.kit.errors import CoverlineError

    settings = get_settings()
    _migrate(settings)
    try:
        asyncio.run(_revoke(settings, code, api_key))
    except CoverlineError as exc:
        _fail(_error_text(exc))
    typer.echo(f"Revoked {api_key}.")


async def _demo(settings: Settings) -> dict[str, Any]:
    """Load the demo catalogue and make sure the demo partner exists; its credentials."""
    from sqlalchemy import select

    from coverline.catalog.definition import load_catalog_file
    from coverline.catalog.service import load_catalog
    from coverline.kit.errors import NotFound
    from coverline.partners.models import ApiCredential
    from coverline.partners.service import create_partner, get_partner, issue_credential

    document = load_catalog_file(DEMO_CATALOG)

    async def work(services: Any) -> dict[str, Any]:
        now = services.clock.now()
        async with services.database.transaction() as session:
            await load_catalog(session, document, now)
            try:
                partner = await get_partner(session, DEMO_PARTNER_CODE)
            except NotFound:
                partner, issued = await create_partner(
                    session, services.box, name="Demo partner", code=DEMO_PARTNER_CODE, now=now
                )
                return _credentials_json(partner.code, issued)
            rows = await session.scalars(
                select(ApiCredential)
                .where(ApiCredential.partner_id == partner.id, ApiCredential.status == "active")
                .order_by(ApiCredential.id)
            )
            found: dict[str, Any] = {"code": partner.code}
            for credential in rows:
                found[credential.mode] = {
                    "api_key": credential.api_key,
                    "api_secret": services.box.decrypt(credential.secret_ciphertext),
                }
            for mode in ("sandbox", "live"):
                if mode not in found:  # every key of the mode revoked: a new one
                    new = await issue_credential(session, services.box, partner, mode, now)
                    found[mode] = {"api_key": new.api_key, "api_secret": new.api_secret}
            return {"code": found.pop("code"), "sandbox": found["sandbox"], "live": found["live"]}

    result: dict[str, Any] = await _with_services(settings, work)
    return result


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Load demo products and partner.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="API processes.")] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run `coverline worker`.")
    ] = False,
) -> None:
    """Run the API and, unless --no-worker, the background worker (migrations apply first)."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from coverline.observability.logs import logging_config
    from coverline.observability.metrics import MULTIPROC_ENV

    if no_worker:
        # Read by every API process that uvicorn starts.
        os.environ["COVERLINE_RUN_WORKER"] = "false"
        get_settings.cache_clear()
    settings = get_settings()
    _configure_logging(settings)
    _migrate(settings)
    if demo:
        credentials = asyncio.run(_demo(settings))
        base = f"http://{host}:{port}"
        typer.echo("Demo partner ready:")
        typer.echo(json.dumps(credentials, indent=2))
        typer.echo(f"API docs: {base}/api/docs")
        typer.echo(
            f"Try: curl -H 'Authorization: Bearer {credentials['sandbox']['api_secret']}' "
            f"{base}/api/partners/{credentials['code']}/bookings/"
        )
        sys.stdout.flush()
    shared_metrics = None
    if workers > 1 and settings.metrics_enabled:
        # Each API process writes its metrics here and a scrape of any of them sums them all.
        # A new directory per start: values of an earlier run must not be added in.
        shared_metrics = tempfile.mkdtemp(prefix="coverline-metrics-")
        os.environ[MULTIPROC_ENV] = shared_metrics
    try:
        uvicorn.run(
            "coverline.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # Ours, in every process: JSON or text lines, and our access log, not uvicorn's.
            log_config=logging_config(settings.log_level, settings.log_format),
            log_level=None,
            access_log=False,
            proxy_headers=True,
        )
    finally:
        if shared_metrics is not None:
            shutil.rmtree(shared_metrics, ignore_errors=True)


async def _run_worker(settings: Settings) -> None:
    import signal

    # Before the slow imports: a SIGTERM during start-up is a clean stop, not a kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    from contextlib import AsyncExitStack

    from coverline.kit.heap import freeze_startup
    from coverline.observability.exporter import serving_metrics
    from coverline.runtime import Services
    from coverline.worker import Worker

    services = Services.build(settings)
    freeze_startup()
    try:
        async with AsyncExitStack() as stack:
            if settings.worker_metrics_port is not None:
                await stack.enter_async_context(
                    serving_metrics(
                        services, settings.worker_metrics_host, settings.worker_metrics_port
                    )
                )
            await Worker(services).run(stop)
    finally:
        await services.close()


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (COVERLINE_WORKER_METRICS_PORT).",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            "--metrics-host",
            help="Interface of the metrics port (COVERLINE_WORKER_METRICS_HOST, 127.0.0.1).",
        ),
    ] = None,
) -> None:
    """Run the background worker alone (webhook dispatch, housekeeping); SIGTERM stops it
    after the sends under way are finished and recorded."""
    settings = get_settings()
    chosen = {"worker_metrics_port": metrics_port, "worker_metrics_host": metrics_host}
    settings = settings.model_copy(
        update={name: value for name, value in chosen.items() if value is not None}
    )
    _configure_logging(settings)
    _migrate(settings)
    typer.echo(f"Worker started on {display_url(settings.resolved_database_url)}.")
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings uvloop everywhere but on Windows
        asyncio.run(_run_worker(settings))
    else:
        # The event loop `coverline serve` runs on under uvicorn: fewer cycles per request.
        uvloop.run(_run_worker(settings))


async def _create_user(
    settings: Settings, partner_code: str | None, email: str, operator: bool, password: str
) -> tuple[str, str | None]:
    """The new user's e-mail, and the one-time password made when none was given."""
    from coverline.dashboard.auth import create_user, generated_password
    from coverline.partners.service import get_partner

    one_time = None if password else generated_password()

    async def work(services: Any) -> str:
        async with services.database.transaction() as session:
            partner = await get_partner(session, partner_code) if partner_code else None
            user = await create_user(
                session,
                email=email,
                password=password or one_time or "",
                partner=partner,
                is_operator=operator,
                now=services.clock.now(),
                must_change_password=one_time is not None,
            )
        return str(user.email)

    address: str = await _with_services(settings, work)
    return address, one_time


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option("--email", help="The user's e-mail address.")],
    partner: Annotated[
        str | None, typer.Option("--partner", help="The code of the user's partner.")
    ] = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="An operator: sees and manages every partner.")
    ] = False,
) -> None:
    """Create a dashboard user. The password is read from standard input when one is piped
    in; otherwise a one-time password is printed, to be changed at the first sign-in."""
    from coverline.kit.errors import CoverlineError

    if operator and partner is not None:
        _fail("A user is an operator (--operator) or a partner's (--partner), not both.")
        return
    password = ""
    if sys.stdin is not None and not sys.stdin.isatty():
        piped = sys.stdin.read()
        password = piped.splitlines()[0] if piped.strip() else ""
    settings = get_settings()
    _migrate(settings)
    try:
        created = asyncio.run(_create_user(settings, partner, email, operator, password))
    except CoverlineError as exc:
        _fail(_error_text(exc))
        return
    address, one_time = created
    role = "operator" if operator else f"user of partner {partner.upper() if partner else ''}"
    typer.echo(f"Dashboard {role} {address} created.")
    if one_time:
        typer.echo(f"One-time password (shown once; change it at the first sign-in): {one_time}")


def _operator_message(exc: BaseException) -> str | None:
    """What an operator can act on, for the failures that come from the environment (a
    setting, the database, the master key, a file); None for a bug, whose traceback shows."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

    from coverline.catalog.definition import CatalogError
    from coverline.kit.errors import CoverlineError
    from coverline.partners.crypto import SecretUnreadable

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return "; ".join(
            f"COVERLINE_{'_'.join(str(part) for part in error['loc']).upper()}: "
            f"{error['msg'].removeprefix('Value error, ')}"
            for error in exc.errors()
        )
    if isinstance(exc, CoverlineError):
        return _error_text(exc)
    if isinstance(exc, CatalogError):
        return str(exc)
    if isinstance(exc, SecretUnreadable):
        return (
            f"{exc} Is COVERLINE_MASTER_KEY (or master.key in the data directory) the key "
            "the data was written with?"
        )
    if isinstance(exc, DBAPIError | OperationalError | InterfaceError | ArgumentError | OSError):
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        first = (
            str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        )
        try:
            where = display_url(get_settings().resolved_database_url)
        except Exception:  # the settings themselves may be what failed
            where = "the configured database"
        return f"Cannot use the database at {where}: {first}"
    return None


def main() -> None:
    # An argument in no UTF-8 (read with surrogate escapes) or with a NUL is no name, code or
    # key any database takes: said as such, not as a failure of the database.
    for argument in sys.argv[1:]:
        if not is_storable(argument):
            typer.secho(
                f"coverline: the argument {argument!r} is not UTF-8 text without NUL.",
                fg=typer.colors.RED,
                err=True,
            )
            raise SystemExit(1)
    try:
        app()
    except Exception as exc:
        message = _operator_message(exc)
        if message is None:
            raise
        typer.secho(f"coverline: {message}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None
