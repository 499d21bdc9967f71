"""`gankit serve`: every endpoint and every kind of bad request, through the app's test client,
on tiny runs of an unconditional, a conditional, an InfoGAN and a StyleGAN model; the Host
check against DNS rebinding, the security headers and the truncation range from the registry."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gankit.errors import UserError
from gankit.models import MODELS
from gankit.serve import create_app, served_hosts
from gankit.serve.explorer import MAX_GRID, MAX_SEED
from gankit.training import train
from tests.conftest import REPO, tiny_overrides


def _train(root: Path, model: str, data: str = "digits", **extra) -> Path:
    run = root / model
    overrides = tiny_overrides(model, num_classes=10)
    train(
        model, data, run_dir=run, model_overrides=overrides, kimg=0.064, batch_size=16,
        log_every=1, progress=False, tensorboard=False, **extra,
    )  # fmt: skip
    return run


def _client(app, **kw) -> TestClient:
    """A test client that browses the app by a loopback name (its default, testserver, is
    refused like any other foreign Host)."""
    return TestClient(app, base_url="http://localhost:8000", **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, digits_run: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    return {
        "dcgan": digits_run,
        "cdcgan": _train(root, "cdcgan"),
        "infogan": _train(root, "infogan"),
        "stylegan": _train(root, "stylegan"),
    }


@pytest.fixture(scope="module")
def clients(runs: dict[str, Path]) -> dict[str, TestClient]:
    return {name: _client(create_app(run)) for name, run in runs.items()}


def _png(r) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content))


def test_page_and_script_are_served(clients):
    c = clients["dcgan"]
    page = c.get("/")
    assert page.status_code == 200 and 'id="grid"' in page.text and "/app.js" in page.text
    js = c.get("/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def test_info_tells_the_page_what_the_model_can_do(clients, runs):
    d = clients["dcgan"].get("/api/info").json()
    assert d["model"] == "dcgan" and d["dataset"] == "digits" and d["images_seen"] == 64
    assert d["num_classes"] == 0 and d["truncation"] == "z" and d["codes"] is None
    assert not d["style_mixing"] and d["limits"]["max_grid"] == MAX_GRID
    c = clients["cdcgan"].get("/api/info").json()
    assert c["num_classes"] == 10 and c["class_names"][3] == "3"
    i = clients["infogan"].get("/api/info").json()
    assert i["codes"] == {"categorical": [10], "continuous": 2}
    s = clients["stylegan"].get("/api/info").json()
    assert s["style_mixing"] and s["truncation"] == "w"
    assert d["truncation_range"] == [0, 2] and s["truncation_range"] == [0, 1]
    # where the slider starts: a threshold of 1 in z, psi 0.7 in w; the page asks for no model
    assert d["truncation_start"] == 1 and s["truncation_start"] == 0.7
    js = clients["dcgan"].get("/app.js").text
    assert "info.truncation_start" in js and '=== "w"' not in js


def test_info_shows_the_runs_eval_scores(tmp_path, runs):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["dcgan"], run)
    (run / "eval.jsonl").write_text(
        '{"metric": "fd_mnistcnn", "value": 12.5, "nimg": 64}\nnot json\n'
        '{"metric": "fd_mnistcnn", "value": 11.0, "nimg": 64}\n'
    )
    info = _client(create_app(run)).get("/api/info").json()
    assert info["metrics"] == [{"metric": "fd_mnistcnn", "value": 11.0, "nimg": 64}]


def test_grid_is_a_png_that_depends_on_seed_and_is_cached(clients):
    c = clients["dcgan"]
    a = c.get("/api/grid.png?seed=0&n=16")
    img = _png(a)
    assert img.size == (2 * (4 * 18 + 2), 2 * (4 * 18 + 2))  # 4x4 grid of 16 px, 2 px padding, 2x
    assert c.get("/api/grid.png?seed=0&n=16").content == a.content
    assert c.get("/api/grid.png?seed=1&n=16").content != a.content
    ex = c.app.state.explorer
    assert ex.cache.hits >= 1


def test_class_truncation_codes_and_mixing_change_the_images(clients):
    c = clients["cdcgan"]
    base = c.get("/api/grid.png?seed=5&n=4").content
    assert c.get("/api/grid.png?seed=5&n=4&cls=3").content not in (base,)
    assert c.get("/api/grid.png?seed=5&n=4&trunc=0.3").content != base
    i = clients["infogan"]  # a 4-step InfoGAN barely varies its output: check the latents
    for url in ("/api/grid.png?seed=5&n=4&cat0=7", "/api/grid.png?seed=5&n=4&cont0=1.5&cont1=-2"):
        _png(i.get(url))
    ex = i.app.state.explorer
    z0 = ex._z([5], None, {"cat:0": 0})
    z7 = ex._z([5], None, {"cat:0": 7})
    zc = ex._z([5], None, {"cat:0": 0, "cont:0": 1.5})
    assert not torch.equal(z0, z7) and not torch.equal(z0, zc)
    assert torch.equal(z0, ex._z([5], None, {"cat:0": 0}))
    s = clients["stylegan"]
    assert (
        s.get("/api/grid.png?seed=1&n=4&trunc=0.5").content
        != s.get("/api/grid.png?seed=1&n=4").content
    )
    mix = _png(s.get("/api/mixing.png?rows=0,1&cols=2,3,4"))
    assert mix.size[0] > mix.size[1]  # 3 rows of 4 cells


def test_walk_returns_its_frames(clients):
    r = clients["dcgan"].get("/api/walk?a=1&b=2&steps=5")
    assert r.status_code == 200
    frames = r.json()["frames"]
    assert len(frames) == 5 and all(f.startswith("data:image/png;base64,") for f in frames)
    assert frames[0] != frames[-1]


def test_losses_curve(clients):
    _png(clients["dcgan"].get("/api/losses.png"))


@pytest.mark.parametrize(
    "model,url,status,words",
    [
        ("dcgan", "/api/grid.png?seed=-1", 422, "seed"),
        ("dcgan", f"/api/grid.png?seed={MAX_SEED + 1}", 422, "seed"),
        ("dcgan", "/api/grid.png?seed=abc", 422, "seed"),
        ("dcgan", f"/api/grid.png?n={MAX_GRID + 1}", 422, "n"),
        ("dcgan", "/api/grid.png?n=0", 422, "n"),
        ("dcgan", "/api/grid.png?cls=1", 400, "not class-conditional"),
        ("cdcgan", "/api/grid.png?cls=10", 400, "cls must be in 0..9"),
        ("cdcgan", "/api/grid.png?cls=-1", 400, "cls must be in 0..9"),
        ("dcgan", "/api/grid.png?trunc=0", 400, "trunc must be in"),
        ("dcgan", "/api/grid.png?trunc=nan", 400, "finite"),
        ("dcgan", "/api/grid.png?trunc=inf", 400, "finite"),
        ("stylegan", "/api/grid.png?trunc=1.5", 400, "trunc must be in (0, 1]"),
        ("dcgan", "/api/grid.png?trunc=2.5", 400, "trunc must be in (0, 2]"),
        ("dcgan", "/api/walk?trunc=3", 400, "trunc must be in (0, 2]"),
        ("dcgan", "/api/grid.png?cat0=1", 400, "no latent codes"),
        ("infogan", "/api/grid.png?cat0=10", 400, "cat:0 must be an integer in 0..9"),
        ("infogan", "/api/grid.png?cont0=9", 400, "cont:0 must be in [-3, 3]"),
        ("infogan", "/api/grid.png?cont2=1", 400, "no continuous code 2"),
        ("dcgan", "/api/walk?steps=1", 422, "steps"),
        ("dcgan", "/api/walk?steps=33", 422, "steps"),
        ("dcgan", "/api/walk?a=-5", 422, "a"),
        ("dcgan", "/api/mixing.png", 400, "style mixing is StyleGAN's"),
        ("stylegan", "/api/mixing.png?rows=../../etc/passwd", 400, "comma-separated integers"),
        ("stylegan", "/api/mixing.png?rows=1,2,3,4,5,6,7,8,9", 400, "1 to 8 seeds"),
        ("stylegan", "/api/mixing.png?crossover=99", 400, "crossover must be in"),
        ("stylegan", f"/api/mixing.png?cols={MAX_SEED + 1}", 400, "seeds must be in"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_message(clients, model, url, status, words):
    r = clients[model].get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and words in body["error"]
    assert "Traceback" not in r.text


def test_unknown_paths_are_404_and_no_file_is_served(clients):
    c = clients["dcgan"]
    for url in ("/static/../../pyproject.toml", "/api/file?path=/etc/passwd", "/config.json"):
        r = c.get(url)
        assert r.status_code == 404
        assert set(r.json()) == {"error"} and "Not Found" in r.json()["error"]


def test_a_wrong_method_is_405_in_the_error_shape(clients):
    r = clients["dcgan"].post("/api/info")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert set(r.json()) == {"error"} and "Method Not Allowed" in r.json()["error"]


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]", "[::1]:8000",
             "LocalHost:8000"],
)  # fmt: skip
def test_the_loopback_names_are_served(clients, host):
    assert clients["dcgan"].get("/api/info", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io",
             "testserver", "[::1", "[::1]x", "localhost:port", ""],
)  # fmt: skip
def test_other_host_names_are_refused_dns_rebinding(clients, host):
    c = clients["dcgan"]
    ex = c.app.state.explorer
    misses = ex.cache.misses
    for url in ("/", "/api/info", "/api/grid.png?seed=77&n=1", "/config.json"):
        r = c.get(url, headers={"Host": host})
        assert r.status_code == 400, (url, r.status_code)
        assert set(r.json()) == {"error"} and "--allowed-hosts" in r.json()["error"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert ex.cache.misses == misses  # refused before anything was generated


def test_allowed_hosts_name_what_another_bind_address_serves(runs):
    assert served_hosts("127.0.0.1") == ("localhost", "127.0.0.1", "[::1]")
    assert served_hosts("0.0.0.0") == ("localhost", "127.0.0.1", "[::1]")
    assert served_hosts("192.168.1.5")[-1] == "192.168.1.5"
    assert served_hosts("::", "gan.lan, fe80::1,GAN.lan:8000")[3:] == ("gan.lan", "[fe80::1]")
    for bad in ("a b", "gan.lan/x", "[::1"):
        with pytest.raises(UserError, match="not a host name"):
            served_hosts("0.0.0.0", bad)
    with pytest.raises(UserError, match="other than loopback"):
        served_hosts("127.0.0.1", "gan.lan")
    c = _client(create_app(runs["dcgan"], allowed_hosts=served_hosts("0.0.0.0", "gan.lan")))
    assert c.get("/api/info", headers={"Host": "gan.lan:8000"}).status_code == 200
    assert c.get("/api/info", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert c.get("/api/info", headers={"Host": "evil.example"}).status_code == 400
    anyone = _client(create_app(runs["dcgan"], allowed_hosts=served_hosts("0.0.0.0", "*")))
    assert anyone.get("/api/info", headers={"Host": "evil.example"}).status_code == 200


def test_serve_warns_which_host_names_another_bind_address_answers_to(runs, capsys, monkeypatch):
    import uvicorn

    from gankit.cli import main

    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config))
    args = ["serve", str(runs["dcgan"]), "--host", "0.0.0.0", "--port", "0"]
    assert main([*args, "--allowed-hosts", "gan.lan"]) == 0
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "localhost, 127.0.0.1, [::1], gan.lan" in err
    assert "--allowed-hosts" in err
    c = _client(apps[-1].app)
    assert c.get("/api/info", headers={"Host": "gan.lan"}).status_code == 200
    assert c.get("/api/info", headers={"Host": "evil.example"}).status_code == 400
    assert main([*args, "--allowed-hosts", "*"]) == 0
    assert "answers to any host name" in capsys.readouterr().err
    assert main([*args, "--allowed-hosts", "a b"]) == 2
    assert "'a b' is not a host name" in capsys.readouterr().err
    assert main(["serve", str(runs["dcgan"]), "--allowed-hosts", "gan.lan"]) == 2
    assert "other than loopback" in capsys.readouterr().err
    assert len(apps) == 2  # the refused ones never started a server


def _security_headers_ok(r) -> None:
    csp = {
        d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else ""
        for d in (x.strip() for x in r.headers["content-security-policy"].split(";"))
    }
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["img-src"] == "'self' data: blob:"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_every_response_carries_the_security_headers(clients, runs, monkeypatch):
    c = clients["dcgan"]
    urls = ["/", "/app.js", "/style.css", "/api/info", "/api/grid.png?n=1", "/api/walk?steps=2",
            "/api/losses.png", "/api/grid.png?cls=1", "/api/grid.png?n=0", "/nothing"]  # fmt: skip
    for url in urls:
        _security_headers_ok(c.get(url))
    _security_headers_ok(c.post("/api/info"))
    broken = _client(create_app(runs["dcgan"]), raise_server_exceptions=False)
    monkeypatch.setattr(broken.app.state.explorer, "info", lambda: 1 / 0)
    r = broken.get("/api/info")
    assert r.status_code == 500 and r.json() == {"error": "internal error (ZeroDivisionError)"}
    _security_headers_ok(r)


def test_the_page_has_no_inline_script_or_style_the_csp_would_block(clients):
    c = clients["dcgan"]
    page = c.get("/").text
    assert "<style" not in page and " style=" not in page and not re.search(r" on[a-z]+=", page)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)
    for src in re.findall(r'(?:src|href)="(/[^"]*)"', page):
        assert c.get(src).status_code == 200, src
    assert c.get("/style.css").headers["content-type"].startswith("text/css")


def test_the_truncation_range_is_the_registry_entrys(runs):
    for name in ("dcgan", "cdcgan", "infogan", "biggan", "stylegan"):
        assert MODELS.get(name).truncation_range == ((0, 1) if name == "stylegan" else (0, 2))
    app = create_app(runs["dcgan"])
    ex = app.state.explorer
    c = _client(app)
    assert c.get("/api/grid.png?n=1&trunc=2").status_code == 200
    # the server asks the entry, not a constant of its own
    ex.run.model.spec = dataclasses.replace(ex.run.model.spec, truncation_range=(0.0, 0.5))
    assert c.get("/api/info").json()["truncation_range"] == [0, 0.5]
    r = c.get("/api/grid.png?n=1&trunc=1")
    assert r.status_code == 400 and "trunc must be in (0, 0.5]" in r.json()["error"]
    with pytest.raises(ValueError, match="truncation_range"):
        dataclasses.replace(ex.run.model.spec, truncation_range=(1.0, 0.5))


def test_the_docs_state_the_registrys_truncation_ranges():
    docs = (REPO / "docs" / "serve.md").read_text()
    for name in ("dcgan", "stylegan"):
        low, high = MODELS.get(name).truncation_range
        assert f"({low:g}, {high:g}]" in docs, name


def test_serve_refuses_a_bad_run_and_a_bad_port(tmp_path, capsys):
    from gankit.cli import main

    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_gankit_serve_prints_its_address_serves_and_stops_on_sigterm(runs):
    import json
    import signal
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "gankit", "serve", str(runs["dcgan"]), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    info = None
    import threading

    guard = threading.Timer(600, proc.kill)  # a safety net against a hang, never a deadline
    guard.start()
    try:
        line = proc.stdout.readline()  # printed once the socket accepts connections
        found = re.search(r"at http://127\.0\.0\.1:([1-9]\d*)/ ", line)
        if found:
            url = f"http://127.0.0.1:{found.group(1)}/api/info"
            with urllib.request.urlopen(url, timeout=60) as r:
                info = json.loads(r.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=600)  # stderr only once it has stopped: no hang
        guard.cancel()
    assert found, line + err
    assert info is not None and info["model"] == "dcgan"
    # uvicorn shuts down gracefully, then re-raises the signal: the shell's usual 143
    assert proc.returncode == -signal.SIGTERM


def test_a_variant_only_the_tests_register_is_served(tmp_path, runs):
    """The page takes a model that is a model file plus its registry entry (tests/variant.py)
    with no edit: what it can do comes from the entry, the loss figure's extra curves from the
    run's objective and regularisers."""
    from tests.variant import NAME

    c = _client(create_app(_train(tmp_path, NAME)))
    info = c.get("/api/info").json()
    assert info["model"] == NAME and info["num_classes"] == 10
    assert info["truncation"] == "z" and info["truncation_range"] == [0, 2]
    assert info["codes"] is None and not info["style_mixing"]
    grid = c.get("/api/grid.png?seed=3&n=4&cls=2&trunc=1")
    assert _png(grid).size == (2 * (2 * 18 + 2), 2 * (2 * 18 + 2))
    assert c.get("/api/grid.png?seed=3&n=4&cls=2").content != grid.content
    r = c.get("/api/mixing.png?rows=0,1&cols=2")
    assert r.status_code == 400 and "has no style inputs" in r.json()["error"]
    r = c.get("/api/grid.png?n=1&cat0=1")
    assert r.status_code == 400 and "has no latent codes" in r.json()["error"]
    _png(c.get("/api/losses.png"))
    assert c.app.state.explorer.curves() == {}
    curves = {name: _client(create_app(run)).app.state.explorer.curves() for name, run in
              runs.items()}  # fmt: skip
    # StyleGAN's own R1 and the lazy R1 that dcgan's grey28 recipe adds; cdcgan has no term
    assert curves["stylegan"] == {"r1": "R1"} and curves["dcgan"] == {"r1": "R1"}
    assert curves["cdcgan"] == {}
    assert set(curves["infogan"]) == {"info_cat", "info_cont"}
