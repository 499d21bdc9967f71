"""`gankit serve` response times on this CPU, and the page's screenshot for the docs.

Trains a class-conditional DCGAN at 32x32 (MNIST from --data-root when it is there, else the
bundled digits) for --seconds, serves it with uvicorn on a local port exactly as
`gankit serve` does, and times HTTP requests from a client in this process: sample grids of
16 and 64 images, new seeds each time (generated) and repeated (from the cache), and a
16-frame latent walk. Then Chromium (Playwright) takes a screenshot of the page.

    python benchmarks/serve.py                   # -> docs/bench_serve.json, docs/figures/serve.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.serve.test_serve_browser import CHROMIUM, serve_in_thread  # noqa: E402

from gankit.training import train  # noqa: E402


def get_ms(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        r.read()
        assert r.status == 200
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_serve.json")
    ap.add_argument("--shot", type=Path, default=ROOT / "docs" / "figures" / "serve.png")
    args = ap.parse_args()
    mnist = (Path(args.data_root) / "MNIST").is_dir()
    data = "mnist" if mnist else "digits"
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        extra = {"data_root": args.data_root, "download": False} if mnist else {}
        train(
            "cdcgan", data, run_dir=run, model_overrides={"resolution": 32},
            epochs=100, max_seconds=args.seconds, batch_size=64, progress=False,
            tensorboard=False, **extra,
        )  # fmt: skip
        url, server, thread = serve_in_thread(run)
        rows = []
        for n in (16, 64):
            grid = f"{url}api/grid.png?n={n}&seed="
            cold = [get_ms(f"{grid}{1000 + 100 * i}") for i in range(args.requests)]
            warm = [get_ms(f"{grid}1000") for _ in range(args.requests)]
            rows.append({"request": f"grid of {n}", "new_ms": statistics.median(cold),
                         "cached_ms": statistics.median(warm),
                         "new_max_ms": max(cold)})  # fmt: skip
        walk = [get_ms(f"{url}api/walk?a={i}&b={i + 1}&steps=16") for i in range(args.requests)]
        rows.append({"request": "walk of 16 frames", "new_ms": statistics.median(walk),
                     "cached_ms": get_ms(f"{url}api/walk?a=0&b=1&steps=16"),
                     "new_max_ms": max(walk)})  # fmt: skip
        print("| request | new (median ms) | new (max ms) | cached (ms) |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['request']} | {r['new_ms']:.0f} | {r['new_max_ms']:.0f} | "
                  f"{r['cached_ms']:.0f} |")  # fmt: skip
        shot = None
        if Path(CHROMIUM).is_file():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url)
                page.wait_for_function("() => document.getElementById('grid').naturalWidth > 0")
                page.wait_for_function(
                    "() => document.getElementById('walk-frame').naturalWidth > 0"
                )
                page.wait_for_function("() => document.getElementById('losses').naturalWidth > 0")
                args.shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.shot), full_page=True)
                browser.close()
            shot = str(args.shot.relative_to(ROOT))
        server.should_exit = True
        thread.join(timeout=10)
    result = {"machine": machine(), "model": "cdcgan 32x32", "data": data,
              "train_seconds": args.seconds, "requests": args.requests, "rows": rows,
              "screenshot": shot}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}" + (f" and {args.shot}" if shot else ""))


if __name__ == "__main__":
    main()
