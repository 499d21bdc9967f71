"""`gankit serve RUN`: a local web page to explore a trained generator.

A small Starlette/FastAPI app over the sampling API. The checkpoint is loaded once, at start,
with the same safe loader as everywhere else; what the page asks is answered by an `Explorer`
(images generated on demand, kept in a small LRU cache). Every request parameter is validated
(seed range, grid size, class range, truncation range, code values) and a bad request gets a
4xx with a one-line JSON message; no parameter ever names a file. `security` decides which
Host names are answered and adds the security headers.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..checkpoint import run_folder
from ..errors import UserError
from ..sampling import load
from .explorer import MAX_GRID, MAX_SEED, MAX_WALK, BadRequest, Explorer
from .security import LOOPBACK_NAMES, SECURITY_HEADERS, HostAndHeaders

STATIC = Path(__file__).with_name("static")


def _seed_list(text: str, what: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BadRequest(f"{what} must be comma-separated integers (got {text[:40]!r})") from None
    if not 1 <= len(seeds) <= 8:
        raise BadRequest(f"{what} takes 1 to 8 seeds (got {len(seeds)})")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise BadRequest(f"{what}: seeds must be in 0..{MAX_SEED}")
    return seeds


def create_app(
    run_or_ckpt: str | Path,
    device: str = "cpu",
    allowed_hosts: Iterable[str] = LOOPBACK_NAMES,  # Host names served ("*": any); see served_hosts
) -> FastAPI:
    """The web app for one run folder or checkpoint (loaded now, once)."""
    run = load(run_or_ckpt, device=device)
    ex = Explorer(run, run_folder(run.checkpoint.path))  # the loaded file's records
    app = FastAPI(title="gankit", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.explorer = ex
    app.add_middleware(HostAndHeaders, allowed_hosts=tuple(allowed_hosts))
    png = "image/png"
    seed_q = Query(0, ge=0, le=MAX_SEED, description="first seed of the grid")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the router's own 404 and 405, in the documented {"error": ...} shape
        return JSONResponse(
            {"error": f"{exc.detail} ({request.method} {request.url.path[:200]})"},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:  # no traceback out
        # Starlette answers this one outside every middleware: the headers are added here
        return JSONResponse(
            {"error": f"internal error ({type(exc).__name__})"},
            status_code=500,
            headers=SECURITY_HEADERS,
        )

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/app.js")
    def script() -> Response:
        return Response((STATIC / "app.js").read_text(), media_type="text/javascript")

    @app.get("/style.css")
    def style() -> Response:
        return Response((STATIC / "style.css").read_text(), media_type="text/css")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return ex.info()

    @app.get("/api/grid.png")
    def grid(
        seed: int = seed_q,
        n: int = Query(16, ge=1, le=MAX_GRID),
        cls: int | None = Query(None),
        trunc: float | None = Query(None),
        cat0: int | None = Query(None),
        cont0: float | None = Query(None),
        cont1: float | None = Query(None),
        cont2: float | None = Query(None),
        cont3: float | None = Query(None),
    ) -> Response:
        codes: dict[str, float] = {}
        if cat0 is not None:
            codes["cat:0"] = cat0
        for i, v in enumerate((cont0, cont1, cont2, cont3)):
            if v is not None:
                if not math.isfinite(v):
                    raise BadRequest(f"cont{i} must be a finite number")
                codes[f"cont:{i}"] = v
        if trunc is not None and not math.isfinite(trunc):
            raise BadRequest("trunc must be a finite number")
        return Response(ex.grid(seed, n, cls, trunc, codes), media_type=png)

    @app.get("/api/walk")
    def walk(
        a: int = Query(0, ge=0, le=MAX_SEED),
        b: int = Query(1, ge=0, le=MAX_SEED),
        steps: int = Query(16, ge=2, le=MAX_WALK),
        cls: int | None = Query(None),
        trunc: float | None = Query(None),
    ) -> dict[str, Any]:
        if trunc is not None and not math.isfinite(trunc):
            raise BadRequest("trunc must be a finite number")
        return {"frames": ex.walk(a, b, steps, cls, trunc)}

    @app.get("/api/mixing.png")
    def mixing(
        rows: str = Query("0,1,2", max_length=200),
        cols: str = Query("3,4,5,6", max_length=200),
        crossover: int | None = Query(None),
    ) -> Response:
        return Response(
            ex.mixing(_seed_list(rows, "rows"), _seed_list(cols, "cols"), crossover),
            media_type=png,
        )

    @app.get("/api/losses.png")
    def losses() -> Response:
        return Response(ex.losses(), media_type=png)

    return app


def serve(app: FastAPI, host: str, port: int, on_listening: Callable[[int], None]) -> None:
    """Run `app` with uvicorn until Ctrl-C or SIGTERM (a graceful shutdown, then the signal).

    `on_listening(port)` is called once the socket accepts connections, with the port the
    system picked when `port` is 0: what a caller waits for before it sends a request.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            bound = [s for srv in getattr(self, "servers", ()) for s in srv.sockets or ()]
            if not self.should_exit:
                on_listening(bound[0].getsockname()[1] if bound else port)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
