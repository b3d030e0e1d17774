"""Request bodies and a recording proxy for the SDK's tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import httpx

NON_ASCII_FIRST = "Ọláolúwa"
NON_ASCII_LAST = "Adéwálé"


def rfc3339(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def ticket_item(
    start_in: timedelta = timedelta(days=1), now: Optional[datetime] = None, **overrides: Any
) -> Dict[str, Any]:
    """An event ticket protection item starting `start_in` after `now` (by default the real
    time; pass a sandbox clock's time for a partner whose clock moved)."""
    start = (now or datetime.now(timezone.utc)) + start_in
    item: Dict[str, Any] = {
        "policy_type": "event_ticket_protection",
        "policy_type_version": 1,
        "policy_start_date": rfc3339(start),
        "event_datetime": rfc3339(start + timedelta(days=10)),
        "event_name": "Ariana Grande",
        "event_location": "The O2",
        "number_of_tickets": 2,
        "tickets": [{"price": 100}],
        "resale_ticket": False,
        "event_country": "GB",
    }
    item.update(overrides)
    return item


def gadget_item(now: Optional[datetime] = None, **overrides: Any) -> Dict[str, Any]:
    """A monthly, renewable gadget cover starting an hour after `now` (see `ticket_item`)."""
    item: Dict[str, Any] = {
        "policy_type": "gadget_cover",
        "policy_type_version": 1,
        "policy_start_date": rfc3339((now or datetime.now(timezone.utc)) + timedelta(hours=1)),
        "device_type": "phone",
        "device_make": "Tecno",
        "device_model": "Camon 30",
        "device_value": 450000,
    }
    item.update(overrides)
    return item


def policyholder(**overrides: Any) -> Dict[str, Any]:
    holder: Dict[str, Any] = {
        "first_name": "Mark",
        "last_name": "Mcintosh",
        "email": "mark.mcintosh@example.com",
        "country": "GB",
    }
    holder.update(overrides)
    return holder


def nigerian_policyholder() -> Dict[str, Any]:
    return policyholder(
        first_name=NON_ASCII_FIRST,
        last_name=NON_ASCII_LAST,
        email="olaoluwa.adewale@example.com",
        country="NG",
        phone="+2348031234567",
    )


# --------------------------------------------------------------------------------- the proxy


@dataclass
class Seen:
    method: str
    path: str
    headers: Dict[str, str]
    body: bytes
    upstream_status: Optional[int] = None


@dataclass
class Step:
    """What the proxy does with one request: answer `status` itself (`forward=False`), or
    forward it and then answer `status` instead of the real answer (`forward=True`), or
    forward it and drop the connection (`drop=True`)."""

    status: int = 0
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    forward: bool = False
    drop: bool = False


class RecordingProxy:
    """A proxy on 127.0.0.1 in front of the real server that records every request and
    follows a script (`steps`) before forwarding normally."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: List[Seen] = []
        self.steps: List[Step] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers.items()), body)
                with proxy._lock:
                    proxy.seen.append(seen)
                    step = proxy.steps.pop(0) if proxy.steps else None
                if step is not None and not step.forward and not step.drop:
                    self._answer(step.status, step.headers, step.body)
                    return
                upstream = proxy._forward(self.command, self.path, self.headers.items(), body)
                seen.upstream_status = upstream.status_code
                if step is not None and step.drop:
                    self.close_connection = True
                    return
                if step is not None:
                    self._answer(step.status, step.headers, step.body)
                    return
                passed = {
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() not in {"content-length", "transfer-encoding", "connection"}
                }
                self._answer(upstream.status_code, passed, upstream.content)

            def _answer(self, status: int, headers: Dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._http = httpx.Client(base_url=self.upstream, timeout=30)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> httpx.Response:
        kept = {k: v for k, v in headers if k.lower() not in {"host", "content-length"}}
        return self._http.request(method, path, headers=kept, content=body or None)

    def script(self, *steps: Step) -> None:
        with self._lock:
            self.steps = list(steps)
            self.seen = []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
