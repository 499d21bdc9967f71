"""`gankit serve` in a real browser: headless Chromium (Debian's package) driven by Playwright.

The page is loaded for a tiny conditional DCGAN; the test changes the seed, picks a class,
moves the truncation slider, plays the latent walk and downloads the grid, checking that the
images change and that the page logs no console error, with the server's Content-Security-
Policy in force (a script, style or image it blocked would be a console error). Skipped when
no Chromium is installed, unless GANKIT_REQUIRE_BROWSER=1 (as .ci/run sets it), where a
missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gankit.models import MODELS
from gankit.training import train
from tests.conftest import tiny_overrides

CHROMIUM = os.environ.get("GANKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _browser_or_skip() -> None:
    if Path(CHROMIUM).is_file():
        return
    if os.environ.get("GANKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip("no Chromium installed (apt-get install chromium, or set GANKIT_CHROMIUM)")


def serve_in_thread(run: Path) -> tuple[str, object, threading.Thread]:
    """Start `gankit serve RUN` on a free local port in a thread; returns (url, server, thread)
    once the server has answered a request."""
    import uvicorn

    from gankit.serve import create_app

    # A socket already listening: requests queue on it until uvicorn takes over, so nothing
    # has to poll for the server, and no other process can take the port in between.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(url + "api/info", timeout=60) as r:  # the app is up
        assert r.status == 200
    return url, server, thread


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _browser_or_skip()
    run = tmp_path_factory.mktemp("browser") / "cdcgan"
    train(
        "cdcgan", "digits", run_dir=run, model_overrides=tiny_overrides("cdcgan", num_classes=10),
        kimg=0.128, batch_size=16, log_every=1, progress=False, tensorboard=False,
    )  # fmt: skip
    url, server, thread = serve_in_thread(run)
    yield url
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)


def _grid_bytes(page) -> bytes:
    """The pixels the page shows in its grid (an element screenshot)."""
    page.wait_for_function("() => document.getElementById('grid').naturalWidth > 0")
    return page.locator("#grid").screenshot()


def _after_change(page, old_src: str) -> None:
    page.wait_for_function(
        "old => { const g = document.getElementById('grid'); "
        "return g.src !== old && g.complete && g.naturalWidth > 0; }",
        arg=old_src,
    )


def test_the_page_in_chromium(page_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_page(viewport={"width": 1200, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(300_000)  # CPU rendering on a loaded machine: no deadline
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(page_url)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_selector("#facts tr")
        assert "cdcgan" in page.locator("#title").inner_text()
        assert "128" in page.locator("#facts").inner_text()  # images seen
        first = _grid_bytes(page)

        # a new seed
        src = page.locator("#grid").get_attribute("src")
        page.fill("#seed", "123")
        page.dispatch_event("#seed", "change")
        _after_change(page, src)
        by_seed = _grid_bytes(page)
        assert by_seed != first

        # one class for every sample
        src = page.locator("#grid").get_attribute("src")
        assert page.locator("#cls-row").is_visible()
        page.select_option("#cls", "3")
        _after_change(page, src)
        by_class = _grid_bytes(page)
        assert by_class != by_seed

        # the truncation slider, over the range of the model's registry entry
        high = MODELS.get("cdcgan").truncation_range[1]
        assert page.eval_on_selector("#trunc", "el => el.max") == f"{high:g}"
        src = page.locator("#grid").get_attribute("src")
        page.check("#trunc-on")
        _after_change(page, src)
        src = page.locator("#grid").get_attribute("src")
        page.eval_on_selector(
            "#trunc", "el => { el.value = '0.2'; el.dispatchEvent(new Event('input')); }"
        )
        _after_change(page, src)
        assert page.locator("#trunc-value").inner_text() == "0.2"
        truncated = _grid_bytes(page)
        assert truncated != by_class

        # the latent walk plays: the step slider and the frame move on their own
        page.wait_for_function("() => document.getElementById('walk-frame').naturalWidth > 0")
        frame0 = page.locator("#walk-frame").get_attribute("src")
        page.click("#walk-play")
        page.wait_for_function("() => Number(document.getElementById('walk-step').value) >= 3")
        assert page.locator("#walk-frame").get_attribute("src") != frame0
        page.click("#walk-play")  # pause
        assert page.locator("#walk-play").inner_text() == "play"
        at = {}
        for step in ("5", "0"):  # the step slider picks frames by hand
            page.eval_on_selector(
                "#walk-step",
                f"el => {{ el.value = '{step}'; el.dispatchEvent(new Event('input')); }}",
            )
            at[step] = page.locator("#walk-frame").get_attribute("src")
        assert at["5"] != at["0"] and page.locator("#walk-pos").inner_text() == "0 / 15"

        # the download button saves the grid on show as a PNG
        with page.expect_download() as dl:
            page.click("#download")
        saved = tmp_path / "grid.png"
        dl.value.save_as(saved)
        assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # a bad value typed by the user shows the server's message, not a broken page
        src = page.locator("#grid").get_attribute("src")
        page.fill("#seed", "-4")
        page.dispatch_event("#seed", "change")
        page.wait_for_function("() => document.getElementById('status').textContent.length > 0")
        assert "seed" in page.locator("#status").inner_text()
        errors = [e for e in errors if "422" not in e]  # the browser logs the refused request

        shot = tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def more_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    _browser_or_skip()
    root = tmp_path_factory.mktemp("browser-more")
    urls, servers = {}, []
    for model in ("infogan", "stylegan"):
        train(
            model, "digits", run_dir=root / model, model_overrides=tiny_overrides(model),
            kimg=0.064, batch_size=16, log_every=1, progress=False, tensorboard=False,
        )  # fmt: skip
        url, server, thread = serve_in_thread(root / model)
        urls[model] = url
        servers.append((server, thread))
    yield urls
    for server, thread in servers:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def test_infogan_sliders_and_stylegan_mixing_in_chromium(more_urls: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(300_000)  # CPU rendering on a loaded machine: no deadline
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # InfoGAN: a category picker and one slider per continuous code, each a new request
        page.goto(more_urls["infogan"])
        page.wait_for_function("() => document.getElementById('grid').naturalWidth > 0")
        assert page.locator("#codes").is_visible() and not page.locator("#cls-row").is_visible()
        assert page.locator("#codes input[type=range]").count() == 2
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/grid.png" in r.url else None)
        src = page.locator("#grid").get_attribute("src")
        page.select_option("#cat0", "7")
        _after_change(page, src)
        src = page.locator("#grid").get_attribute("src")
        page.eval_on_selector(
            "#cont1", "el => { el.value = '1.5'; el.dispatchEvent(new Event('input')); }"
        )
        _after_change(page, src)
        assert "cat0=7" in asked[0] and "cat0=7" in asked[1] and "cont1=1.5" in asked[1]

        # StyleGAN: the mixing view, and truncation as psi in (0, 1]
        page.goto(more_urls["stylegan"])
        page.wait_for_function("() => document.getElementById('mix').naturalWidth > 0")
        assert page.locator("#mixing-section").is_visible()
        assert page.eval_on_selector("#trunc", "el => el.max") == "1"
        assert MODELS.get("stylegan").truncation_range[1] == 1
        before = page.locator("#mix").screenshot()
        src = page.locator("#mix").get_attribute("src")
        page.fill("#mix-rows", "7,8")
        page.click("#mix-go")
        page.wait_for_function(
            "old => { const m = document.getElementById('mix'); "
            "return m.src !== old && m.complete && m.naturalWidth > 0; }",
            arg=src,
        )
        assert page.locator("#mix").screenshot() != before  # 2 source rows now, not 3
        browser.close()
    assert errors == [], errors
