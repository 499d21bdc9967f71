"""`gankit serve`: every endpoint and every kind of bad request, through the app's test client,
on tiny runs of an unconditional, a conditional, an InfoGAN and a StyleGAN model."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gankit.serve import create_app
from gankit.serve.app import MAX_GRID, MAX_SEED
from gankit.training import train

from .conftest import tiny_overrides


def _train(root: Path, model: str, data: str = "digits", **extra) -> Path:
    run = root / model
    overrides = tiny_overrides(model, num_classes=10)
    train(
        model, data, run_dir=run, model_overrides=overrides, kimg=0.064, batch_size=16,
        log_every=1, progress=False, tensorboard=False, **extra,
    )  # fmt: skip
    return run


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
    return {name: TestClient(create_app(run)) for name, run in runs.items()}


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


def test_info_shows_the_runs_eval_scores(tmp_path, runs):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["dcgan"], run)
    (run / "eval.jsonl").write_text(
        '{"metric": "fd_mnistcnn", "value": 12.5, "nimg": 64}\nnot json\n'
        '{"metric": "fd_mnistcnn", "value": 11.0, "nimg": 64}\n'
    )
    info = TestClient(create_app(run)).get("/api/info").json()
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
        assert c.get(url).status_code == 404


def test_serve_refuses_a_bad_run_and_a_bad_port(tmp_path, capsys):
    from gankit.cli import main

    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err


def test_gankit_serve_prints_its_address_serves_and_stops_on_sigterm(runs):
    import json
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gankit", "serve", str(runs["dcgan"]), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert f"at http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        for _ in range(100):  # the address is printed just before the socket opens
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info") as r:
                    assert json.loads(r.read())["model"] == "dcgan"
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server never answered")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal: the shell's usual 143
    assert proc.returncode == -signal.SIGTERM
