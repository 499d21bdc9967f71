"""`gankit serve RUN`: a local web page to explore a trained generator.

A small Starlette/FastAPI app over the sampling API. The checkpoint is loaded once, at start,
with the same safe loader as everywhere else; images are generated on demand on the CPU and
kept in a small LRU cache. Every request parameter is validated (seed range, grid size, class
range, truncation range, code values) and a bad request gets a 4xx with a one-line JSON
message; no parameter ever names a file.

A page on another site must not be able to drive the server: one middleware refuses any Host
header the server was not told to answer to (a DNS-rebinding page sends its own name) and
gives every response headers that keep the page from being framed, sniffed or injected into.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import viz
from ..checkpoint import run_folder
from ..errors import UserError
from ..latent import prior_of
from ..sampling import LoadedRun, load, render

STATIC = Path(__file__).with_name("static")
MAX_SEED = 2**31 - 1
MAX_GRID = 64  # images in one grid
MAX_WALK = 32  # frames in one walk
CACHE_ITEMS = 256

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


class BadRequest(Exception):
    """A request the page (or anyone) sent with a value out of range: HTTP 400."""


class _LRU:
    """A tiny thread-safe LRU of PNG bytes keyed by the request's meaning."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
        value = make()
        with self._lock:
            self.misses += 1
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def png_bytes(images: torch.Tensor, nrow: int) -> bytes:
    """A grid PNG of images in [-1, 1] (small images enlarged 2x, as in the progress grids)."""
    img = viz.grid_image(images, nrow=nrow, padding=2 if images.shape[0] > 1 else 0)
    if images.shape[-1] <= 32:
        img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """What the page can ask of one loaded generator."""

    def __init__(self, run: LoadedRun, run_dir: Path) -> None:
        self.run = run
        self.run_dir = run_dir
        self.prior = prior_of(run.G)
        self.cache = _LRU(CACHE_ITEMS)
        self._lock = threading.Lock()  # one generation at a time: torch already uses all cores

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        meta = self.run.checkpoint.meta
        mc = meta.get("run_config", {}).get("model_config", {})
        spec = self.run.model.spec
        prior = self.prior
        codes = None
        if spec.codes:
            codes = {"categorical": list(prior.categorical), "continuous": prior.continuous}
        return {
            "model": self.run.model.name,
            "dataset": meta.get("data", {}).get("name"),
            "images_seen": int(meta.get("nimg", 0)),
            "step": int(meta.get("step", 0)),
            "resolution": mc.get("resolution"),
            "channels": mc.get("channels"),
            "num_classes": self.run.num_classes,
            "class_names": self.run.class_names,
            "truncation": spec.truncation,  # None, "z" (resampling) or "w" (psi, StyleGAN)
            # (low, high]: the page's slider spans it, the server refuses values outside it
            "truncation_range": list(spec.truncation_range) if spec.truncation else None,
            "codes": codes,
            "style_mixing": spec.style_mixing,
            "used_ema": self.run.used_ema,
            "metrics": self.metrics(),
            "limits": {"max_seed": MAX_SEED, "max_grid": MAX_GRID, "max_walk": MAX_WALK},
        }

    def curves(self) -> dict[str, str]:
        """The extra loss-figure curves the run's objective and regularisers declare."""
        from ..objectives import create_objective
        from ..regularisers import create_regularisers

        train = self.run.checkpoint.run_config.train  # checked by the loader: these build
        objective = create_objective(train.objective or self.run.model.spec.objective)
        return viz.declared_curves([objective, *create_regularisers(train.reg)])

    def metrics(self) -> list[dict[str, Any]]:
        """The latest value of each metric in RUN/eval.jsonl (what `gankit eval` wrote)."""
        path = self.run_dir / "eval.jsonl"
        latest: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "metric" in rec and "value" in rec:
                    latest[str(rec["metric"])] = {
                        "metric": rec["metric"],
                        "value": rec["value"],
                        "nimg": rec.get("nimg"),
                    }
        return list(latest.values())

    # ------------------------------------------------------------------ checks
    def _labels(self, cls: int | None, n: int) -> torch.Tensor | None:
        k = self.run.num_classes
        if k == 0:
            if cls is not None:
                raise BadRequest(f"{self.run.model.name} is not class-conditional: drop cls")
            return None
        if cls is None:
            return torch.arange(n) % k  # one class per column, cycling
        if not 0 <= cls < k:
            raise BadRequest(f"cls must be in 0..{k - 1} (got {cls})")
        return torch.full((n,), cls, dtype=torch.long)

    def _truncation(self, trunc: float | None) -> float | None:
        spec = self.run.model.spec
        if trunc is None:
            return None
        if spec.truncation is None:
            raise BadRequest(f"{self.run.model.name} has no truncation: drop trunc")
        low, high = spec.truncation_range  # the registry's range: also what the slider offers
        if not (low < trunc <= high):
            raise BadRequest(f"trunc must be in ({low:g}, {high:g}] for {self.run.model.name}")
        return trunc

    def _z(self, seeds: list[int], trunc: float | None, codes: dict[str, float]) -> torch.Tensor:
        z_trunc, _ = self.run.model.spec.split_truncation(trunc)
        z = self.prior.from_seeds(seeds, truncation=z_trunc)
        if codes:
            if not self.run.model.spec.codes:
                raise BadRequest(f"{self.run.model.name} has no latent codes: drop the codes")
            cat, cont = {}, {}
            for name, value in codes.items():
                kind, _, index = name.partition(":")
                i = int(index)
                if kind == "cat":
                    if not 0 <= i < len(self.prior.categorical):
                        raise BadRequest(f"no categorical code {i}")
                    if not (value == int(value) and 0 <= value < self.prior.categorical[i]):
                        raise BadRequest(
                            f"cat:{i} must be an integer in 0..{self.prior.categorical[i] - 1}"
                        )
                    cat[i] = int(value)
                else:
                    if not 0 <= i < self.prior.continuous:
                        raise BadRequest(f"no continuous code {i}")
                    if not -3 <= value <= 3:
                        raise BadRequest(f"cont:{i} must be in [-3, 3] (got {value})")
                    cont[i] = float(value)
            z = self.prior.with_codes(z, categorical=cat, continuous=cont)
        return z

    def _render(self, z: torch.Tensor, labels: torch.Tensor | None, trunc: float | None):
        _, psi = self.run.model.spec.split_truncation(trunc)
        with self._lock:
            return render(self.run, z, labels, psi)

    # ------------------------------------------------------------------ images
    def grid(
        self, seed: int, n: int, cls: int | None, trunc: float | None, codes: dict[str, float]
    ) -> bytes:
        trunc = self._truncation(trunc)
        labels = self._labels(cls, n)
        key = ("grid", seed, n, cls, trunc, tuple(sorted(codes.items())))

        def make() -> bytes:
            seeds = [(seed + i) % (MAX_SEED + 1) for i in range(n)]
            images = self._render(self._z(seeds, trunc, codes), labels, trunc)
            return png_bytes(images, nrow=max(1, math.ceil(math.sqrt(n))))

        return self.cache.get(key, make)

    def walk(self, a: int, b: int, steps: int, cls: int | None, trunc: float | None) -> list[str]:
        """Frames of a latent walk from seed a to seed b, as PNG data URLs."""
        trunc = self._truncation(trunc)
        labels = self._labels(cls, steps)
        if cls is None and labels is not None:
            labels = torch.zeros(steps, dtype=torch.long)  # one class along the whole walk
        key = ("walk", a, b, steps, cls, trunc)

        def make() -> bytes:
            ends = self._z([a, b], trunc, {})
            t = torch.linspace(0, 1, steps)[:, None]
            z = torch.lerp(ends[0:1], ends[1:2], t)
            images = self._render(z, labels, trunc)
            frames = [png_bytes(images[i : i + 1], nrow=1) for i in range(steps)]
            return json.dumps([base64.b64encode(f).decode() for f in frames]).encode()

        return ["data:image/png;base64," + f for f in json.loads(self.cache.get(key, make))]

    def mixing(self, rows: list[int], cols: list[int], crossover: int | None) -> bytes:
        from ..analysis.style_mixing import style_mixing_grid

        G = self.run.G
        if not self.run.model.spec.style_mixing:
            raise BadRequest(
                f"{self.run.model.name} has no style inputs: style mixing is StyleGAN's"
            )
        if crossover is not None and not 0 <= crossover <= G.num_ws:
            raise BadRequest(f"crossover must be in 0..{G.num_ws} (got {crossover})")
        key = ("mix", tuple(rows), tuple(cols), crossover)

        def make() -> bytes:
            with self._lock:
                images, layout = style_mixing_grid(G, rows, cols, crossover)
            return png_bytes(images, nrow=layout.nrow)

        return self.cache.get(key, make)

    def losses(self) -> bytes:
        key = ("losses",)

        def make() -> bytes:
            path = self.run_dir / "metrics.jsonl"
            if not path.is_file():
                raise BadRequest("this run has no metrics.jsonl, so no loss curve")
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "losses.png"
                viz.plot_losses(path, out, title=f"{self.run.model.name}", curves=self.curves())
                return out.read_bytes()

        return self.cache.get(key, make)


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


def create_app(
    run_or_ckpt: str | Path,
    device: str = "cpu",
    allowed_hosts: Iterable[str] = LOOPBACK_NAMES,  # Host names served ("*": any); see served_hosts
) -> FastAPI:
    """The web app for one run folder or checkpoint (loaded now, once)."""
    run = load(run_or_ckpt, device=device)
    ex = Explorer(run, run_folder(run_or_ckpt))
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


def check_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    return host in ("127.0.0.1", "localhost", "::1")


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
