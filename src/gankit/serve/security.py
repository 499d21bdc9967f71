"""Who may drive the server: the Host names it answers to, and the headers of every response.

A page on another site must not be able to drive the server: one middleware refuses any Host
header the server was not told to answer to (a DNS-rebinding page sends its own name) and
gives every response headers that keep the page from being framed, sniffed or injected into.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UserError

# The names a page on this machine reaches a loopback server by. Any other Host header on a
# loopback server is a page from elsewhere whose DNS name was rebound to 127.0.0.1.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"
# Only the page's own files may run or style it (no inline code: nothing injected can run);
# images also come as data: URLs (walk frames) and blob: URLs (grids, the PNG download).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
}
_NAME = re.compile(r"\[[0-9a-f:.]+\]|[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")


def host_name(header: str) -> str | None:
    """The name in a Host header (or an --allowed-hosts entry), lower-cased, without its port;
    IPv6 addresses in brackets. None when it is not a well-formed host name."""
    text = header.strip().lower()
    if text.count(":") >= 2 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address (only --allowed-hosts entries come so)
    if text.startswith("["):
        name, sep, rest = text.partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        name, port = name + "]", rest[1:] if rest else "0"
    else:
        name, sep, port = text.partition(":")
        port = port if sep else "0"
    if not port.isdigit() or not _NAME.fullmatch(name):
        return None
    return name


def served_hosts(bind: str, allowed: str | None = None) -> tuple[str, ...]:
    """The Host names a server bound to `bind` answers to: this machine's own names, the bound
    address itself (unless a wildcard), and the comma-separated `allowed` ("*": any name).

    Raises:
        UserError: an entry of `allowed` that is not a host name, or `allowed` on loopback.
    """
    names = list(LOOPBACK_NAMES)
    if allowed and check_loopback(bind):
        raise UserError(
            f"--allowed-hosts is for a --host other than loopback: on {bind} the page answers "
            f"to {', '.join(LOOPBACK_NAMES)} only"
        )
    if not check_loopback(bind) and bind not in ("", "0.0.0.0", "::"):
        names.append(host_name(bind) or bind)
    for entry in (allowed or "").split(","):
        if not entry.strip():
            continue
        name = ANY_HOST if entry.strip() == ANY_HOST else host_name(entry)
        if name is None:
            raise UserError(f"--allowed-hosts: {entry.strip()!r} is not a host name")
        if name not in names:
            names.append(name)
    return tuple(names)


class HostAndHeaders:
    """ASGI middleware: a 400 for a Host the server does not answer to (the DNS-rebinding
    defence: a browser always sends the name of the site whose page made the request), and the
    security headers on every other response, whichever route or error handler made it."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.allowed = frozenset(allowed_hosts)
        self.any_host = ANY_HOST in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; the app has no websocket route to reach
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if not self.any_host and host_name(host) not in self.allowed:
            refused = JSONResponse(
                {
                    "error": f"this server answers to the host names "
                    f"{', '.join(sorted(self.allowed))} only, not {host[:80]!r} (with a --host "
                    "other than loopback, --allowed-hosts adds names)"
                },
                status_code=400,
                headers=SECURITY_HEADERS,
            )
            await refused(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers[key] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    return host in ("127.0.0.1", "localhost", "::1")
