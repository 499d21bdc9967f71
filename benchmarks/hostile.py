"""Hostile input, every case: what each command does with it (exit code, first line, traceback
or not, peak memory). Prints a table and writes docs/bench_hostile.json.

    python benchmarks/hostile.py [--only GROUP] [--out docs/bench_hostile.json]

Every case is a real `gankit` process on files this script makes: forged checkpoints and
domain classifiers (metadata changed, checksum recomputed, as a hostile author would), a
pickle named .safetensors, broken image folders and npz files, bad options, unwritable
outputs, signals, and HTTP requests to `gankit serve`. Signals are sent at events the process
shows (its temp folder appearing, its first checkpoint written), never after a guessed delay.

The driver imports no torch: peak RSS comes from wait4() of each child, and a forked child
inherits its parent's peak, so the files are made by a child process (`--make-files`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
}
TINY = [
    *("--data", "digits", "--resolution", "16", "--batch-size", "16", "--no-progress"),
    *("--set", "ngf=8", "--set", "ndf=8", "--set", "nz=8", "--precision", "fp32"),
]


@dataclass
class Result:
    group: str
    case: str
    command: str
    expected: str
    rc: int | None
    first_line: str
    traceback: bool
    peak_rss_mib: float
    seconds: float
    ok: bool
    notes: list[str] = field(default_factory=list)


def _first_line(out: str, err: str) -> str:
    for text in (err, out):
        for line in text.splitlines():
            if line.strip():
                return line.strip()[:160]
    return ""


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path,
    when: Callable[[], bool] | None = None,
    send: int | None = None,
    limit_fsize: int | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str, float, float]:
    """Run `gankit ARGV`; with `when`/`send`, send that signal once `when()` turns true
    (checked while the process runs; nothing is sent if it ends first).
    Returns (exit code as the shell sees it, stdout, stderr, peak RSS MiB, seconds)."""

    def limits() -> None:
        if limit_fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))

    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gankit", *map(str, argv)],
            cwd=cwd, env=env or ENV, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
            preexec_fn=limits if limit_fsize is not None else None,
        )  # fmt: skip
        sent = False
        while when is not None and not sent:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if when():
                proc.send_signal(send or signal.SIGTERM)
                sent = True
            else:
                time.sleep(0.02)  # polling for the event only; the outcome never depends on it
        else:
            pid = 0
        if not pid:
            pid, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    rc = 128 - rc if rc < 0 else rc  # killed by a signal: the shell's 128 + N
    return rc, out, err, ru.ru_maxrss / 1024, seconds


# ----------------------------------------------------------------------------- the files


def make_files(work: Path) -> None:
    """(Runs in a child process: it imports torch.) Everything the cases need, under `work`."""
    import numpy as np
    import torch
    from safetensors import safe_open

    from gankit.checkpoint import list_checkpoints, seal
    from gankit.cli import main
    from gankit.metrics.classifier import train_classifier

    run = work / "run"
    assert main(["train", "dcgan", *TINY, "--kimg", "0.064", "--set", "ckpt_every_kimg=0.032",
                 "--run-dir", str(run)]) == 0  # fmt: skip
    newest = list_checkpoints(run)[-1]
    with safe_open(str(newest), framework="pt") as f:
        meta = json.loads(f.metadata()["gankit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    def forge(name: str, change: Callable[[dict], None], into: Path | None = None) -> None:
        doc = json.loads(json.dumps(meta))
        change(doc)
        doc.pop("sha256", None)
        (into or work / f"{name}.safetensors").write_bytes(
            seal(tensors, doc, int(doc["format_version"]))
        )

    mc = lambda d: d["run_config"]["model_config"]  # noqa: E731
    forge("forged-ngf", lambda d: mc(d).update(ngf=1_000_000))
    forge("forged-resolution", lambda d: mc(d).update(resolution=2**20))
    forge("forged-model", lambda d: d.update(model="no-such-model"))
    forge("forged-key", lambda d: mc(d).update(evil=1))
    forge("forged-shape", lambda d: mc(d).update(ngf=16))
    forge("forged-batch", lambda d: d["run_config"]["train"].update(batch_size=10**12))
    # a run folder whose newest checkpoint is forged: loads fall back to the older one
    fall = work / "fallback"
    shutil.copytree(run, fall)
    forge("", lambda d: mc(d).update(ngf=1_000_000), into=list_checkpoints(fall)[-1])
    # accidental damage: one byte of the JSON changed, the checksum left as it was
    data = bytearray(newest.read_bytes())
    at = data.index(b"nimg")  # inside the header's JSON: one letter of a key
    data[at] = ord("N")
    (work / "damaged-meta.safetensors").write_bytes(bytes(data))
    # a pickle saved as .safetensors
    import pickle

    class Trap:
        def __reduce__(self) -> tuple:
            return (open, (str(work / "PWNED"), "w"))

    (work / "pickle.safetensors").write_bytes(pickle.dumps(Trap()))
    # domain classifiers: a sound one and one whose config asks for 10^9 features
    clf = work / "clf.safetensors"
    train_classifier("digits", out=clf, epochs=1, max_images=200, progress=False)
    with safe_open(str(clf), framework="pt") as f:
        cmeta = json.loads(f.metadata()["gankit"])
        ctensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    cmeta["config"]["features"] = 10**9
    cmeta.pop("sha256", None)
    (work / "clf-forged.safetensors").write_bytes(
        seal(ctensors, cmeta, int(cmeta["format_version"]))
    )
    # data: a folder of broken and odd images, a decompression bomb, hostile npz files
    from PIL import Image

    folder = work / "images"
    folder.mkdir()
    for i in range(40):
        Image.fromarray((np.random.default_rng(i).random((20, 20, 3)) * 255).astype("uint8")).save(
            folder / f"ok{i}.png"
        )
    Image.new("CMYK", (12, 12), (0, 128, 0, 0)).save(folder / "cmyk.jpg")
    Image.new("P", (12, 12)).save(folder / "palette.png", transparency=0)
    good = (folder / "ok0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "random.jpg").write_bytes(os.urandom(500))
    bomb = work / "bomb"
    bomb.mkdir()
    shutil.copy(folder / "ok0.png", bomb / "ok.png")
    shutil.copy(folder / "ok1.png", bomb / "ok1.png")
    png = bytearray(good)  # IHDR width and height at bytes 16..24: claim 2^31 - 1 squared
    png[16:24] = (2**31 - 1).to_bytes(4, "big") * 2
    (bomb / "bomb.png").write_bytes(bytes(png))
    np.savez(work / "object.npz", x=np.array([Trap()], dtype=object), allow_pickle=True)
    header = repr({"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**9, 10**9)})
    header = header.encode() + b" " * (63 - (len(header) + 10) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64
    import zipfile

    with zipfile.ZipFile(work / "huge-header.npz", "w") as z:
        z.writestr("x.npy", member)
    np.savez(work / "digits.npz", x=np.zeros((32, 16, 16, 1), dtype=np.uint8))
    torch.save({"x": 1}, work / "torch-save.pt")
    (work / "existing.png").write_bytes(b"keep me")


# ----------------------------------------------------------------------------- the cases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_cases(work: Path, results: list[Result]) -> None:
    """Start `gankit serve` and send it hostile requests (one server, many requests)."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gankit", "serve", str(work / "run"), "--port", str(port)],
            cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=fe, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the event: it says where it serves
            if "serving" not in line:
                raise RuntimeError(f"gankit serve did not start: {line!r}")
            requests = [
                ("DNS rebinding", "GET", "/", "evil.example", "400 or 421"),
                ("DNS rebinding, with a port", "GET", "/api/info", f"evil.example:{port}",
                 "400 or 421"),
                ("loopback name", "GET", "/", f"localhost:{port}", "200 + security headers"),
                ("loopback address", "GET", "/", f"127.0.0.1:{port}", "200"),
                ("IPv6 loopback", "GET", "/", f"[::1]:{port}", "200"),
                ("unknown path", "GET", "/nope", f"127.0.0.1:{port}", '404 {"error"}'),
                ("wrong method", "DELETE", "/", f"127.0.0.1:{port}", '405 {"error"}'),
                ("truncation above the model's range", "GET",
                 "/api/grid.png?seed=0&n=4&trunc=3.5", f"127.0.0.1:{port}", '400 {"error"}'),
            ]  # fmt: skip
            for case, method, path, host, expected in requests:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                t0 = time.perf_counter()
                conn.putrequest(method, path, skip_host=True)
                conn.putheader("Host", host)
                conn.endheaders()
                resp = conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in resp.getheaders()}
                conn.close()
                ok = _web_ok(expected, resp.status, body, headers)
                results.append(Result(
                    "web page", case, f"{method} {path} Host: {host}", expected, resp.status,
                    body.splitlines()[0][:160] if body.strip() else "",
                    "Traceback" in body, 0.0, time.perf_counter() - t0, ok,
                    [f"{k}: {headers[k]}" for k in SECURITY_HEADERS if k in headers]
                    if case == "loopback name" else [],
                ))  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=120)
            fe.seek(0)
            if "Traceback" in fe.read():
                results.append(Result("web page", "server log", "gankit serve", "no traceback",
                                      proc.returncode, "a traceback in the server's log", True,
                                      0.0, 0.0, False))  # fmt: skip


SECURITY_HEADERS = (
    "content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options",
)  # fmt: skip


def _web_ok(expected: str, status: int, body: str, headers: dict[str, str]) -> bool:
    if expected.startswith("400 or 421"):
        return status in (400, 421) and '"error"' in body
    if expected.startswith("200 + security"):
        csp = headers.get("content-security-policy", "")
        return (
            status == 200
            and headers.get("x-content-type-options") == "nosniff"
            and "frame-ancestors 'none'" in csp
            and "script-src 'self'" in csp
            and "referrer-policy" in headers
        )
    code = int(expected.split()[0])
    return status == code and ('"error"' in body if "error" in expected else True)


def cli_cases(work: Path) -> list[tuple[str, str, list[str], str, dict]]:
    """(group, case, argv, expected, options for `run`)."""
    run_, clf = str(work / "run"), str(work / "clf.safetensors")
    ngf = str(work / "forged-ngf.safetensors")
    ck = "Checkpoint metadata (forged, valid checksum)"
    cases: list[tuple[str, str, list[str], str, dict]] = [
        ("Baseline", "imports only: gankit models", ["models"], "0", {}),
        ("Baseline", "a sound checkpoint: gankit sample", ["sample", run_, "--out",
         str(work / "sound.png")], "0", {}),  # fmt: skip
        (ck, "ngf = 1,000,000", ["sample", ngf], "2", {}),
        (ck, "resolution = 2**20", ["sample", str(work / "forged-resolution.safetensors")],
         "2", {}),
        (ck, "unknown model name", ["sample", str(work / "forged-model.safetensors")], "2", {}),
        (ck, "unknown config key", ["sample", str(work / "forged-key.safetensors")], "2", {}),
        (ck, "config does not fit the tensors", ["sample", str(work / "forged-shape.safetensors")],
         "2", {}),
        (ck, "batch_size = 10**12 on resume", ["train", "--resume",
         str(work / "forged-batch.safetensors"), "--no-progress"], "2", {}),
        (ck, "run folder, newest forged", ["sample", str(work / "fallback"), "--out",
         str(work / "fallback.png")], "0 + one-line warning", {}),
        (ck, "metadata damaged, old checksum", ["sample",
         str(work / "damaged-meta.safetensors")], "2", {}),
        (ck, "domain classifier, features = 10**9", ["eval", run_, "--metrics", "fd1k_mnistcnn",
         "--evaluator", str(work / "clf-forged.safetensors"), "--no-append"], "2", {}),
    ]  # fmt: skip
    every = {
        "sample": [], "eval": ["--metrics", "fd1k_pixel", "--no-append"], "serve": [],
        "interpolate": [], "arithmetic": ["--a", "1", "--b", "2", "--c", "3"],
        "filters": [], "ablate": ["--list"], "probe": [], "features": [], "codes": [],
        "mixing": [], "truncation": [], "memorisation": [],
        "project": [str(work / "images" / "ok0.png")],
    }  # fmt: skip
    for command, extra in every.items():
        cases.append((ck, f"ngf = 1,000,000: {command}", [command, ngf, *extra], "2", {}))
    cases.append((ck, "ngf = 1,000,000: train --resume",
                  ["train", "--resume", ngf, "--no-progress"], "2", {}))  # fmt: skip
    opt = "Options"
    for dev in ("cuda", "foo", "xla", "mps", "meta"):
        cases.append((opt, f"sample --device {dev}", ["sample", run_, "--device", dev], "2", {}))
    for command in ("serve", "eval", "interpolate", "filters"):
        extra = ["--metrics", "fd1k_pixel"] if command == "eval" else []
        cases.append((opt, f"{command} --device meta", [command, run_, *extra, "--device",
                      "meta"], "2", {}))  # fmt: skip
    cases += [
        (opt, "eval fd99999999k_mnistcnn", ["eval", run_, "--metrics", "fd99999999k_mnistcnn"],
         "2 at once", {}),
        (opt, "eval fd50k_mnistcnn, no classifier", ["eval", run_, "--metrics", "fd50k_mnistcnn",
         "--no-append"], "2 at once", {"env": {**ENV, "GANKIT_CACHE": str(work / "cache")}}),
        (opt, "eval with a sound classifier", ["eval", run_, "--metrics", "fd200_mnistcnn",
         "--evaluator", clf, "--no-append"], "0", {}),
    ]  # fmt: skip
    out = "Output"
    many = work / "many"
    tmp_of_many = lambda: any(  # noqa: E731 (the event: the temp folder is being filled)
        p.name.startswith(".many.") and p.is_dir() for p in work.iterdir()
    )
    cases += [
        (out, "sample --out /proc/x.png", ["sample", run_, "--out", "/proc/x.png"], "1", {}),
        (out, "sample --out /proc/sub/", ["sample", run_, "--out", "/proc/sub/"], "1", {}),
        (out, "interpolate --out /proc/walk", ["interpolate", run_, "--out", "/proc/walk"], "1",
         {}),
        (out, "SIGTERM while filling --out DIR/", ["sample", run_, "--seeds", "0-19999",
         "--out", f"{many}/"], "143, no folder, no temp", {"when": tmp_of_many,
         "send": signal.SIGTERM}),
        (out, "SIGINT while filling --out DIR/", ["sample", run_, "--seeds", "0-19999",
         "--out", f"{many}/"], "130, no folder, no temp", {"when": tmp_of_many,
         "send": signal.SIGINT}),
        (out, "--out existing.png", ["sample", run_, "--out", str(work / "existing.png")],
         "2, file kept", {}),
        (out, "--out existing.png/", ["sample", run_, "--out", f"{work / 'existing.png'}/"],
         "2, file kept", {}),
        (out, "--out with a terminal escape", ["sample", run_, "--seeds", "0-1", "--out",
         str(work / "q\x1b[31mred.png")], "0, escape shown as \\x1b", {}),
    ]  # fmt: skip
    first_ckpt = lambda d: lambda: any((d / "checkpoints").glob("ckpt-*.safetensors"))  # noqa: E731
    flt = "Faults (docs/robustness.md)"
    cases += [
        (flt, "SIGTERM during training", ["train", "dcgan", *TINY, "--kimg", "1000", "--set",
         "ckpt_every_kimg=0.016", "--run-dir", str(work / "sigterm")], "143 + checkpoint",
         {"when": first_ckpt(work / "sigterm"), "send": signal.SIGTERM}),
        (flt, "kill -9 during training", ["train", "dcgan", *TINY, "--kimg", "1000", "--set",
         "ckpt_every_kimg=0.016", "--run-dir", str(work / "killed")], "137",
         {"when": first_ckpt(work / "killed"), "send": signal.SIGKILL}),
        (flt, "... then --resume", ["train", "--resume", str(work / "killed"), "--kimg", "0.064",
         "--no-progress"], "0", {}),
        (flt, "file size limit (EFBIG) while writing", ["train", "dcgan", *TINY, "--kimg",
         "0.064", "--set", "ckpt_every_kimg=0.016", "--run-dir", str(work / "efbig")], "1",
         {"limit_fsize": 60_000}),
        (flt, "divergence: --lr 1e30", ["train", "dcgan", *TINY, "--kimg", "0.064", "--lr",
         "1e30", "--run-dir", str(work / "diverge")], "3", {}),
    ]  # fmt: skip
    dat = "Hostile input (docs/robustness.md)"
    cases += [
        (dat, "a pickle named .safetensors", ["sample", str(work / "pickle.safetensors")],
         "2, never unpickled", {}),
        (dat, "a torch.save file", ["sample", str(work / "torch-save.pt")], "2", {}),
        (dat, "folder: truncated, empty, random bytes, CMYK, palette", ["train", "dcgan", *TINY,
         "--data", f"folder:{work / 'images'}", "--kimg", "0.032", "--run-dir",
         str(work / "folder-run")], "0, 3 skipped", {}),
        (dat, "folder: a PNG declaring 2^31 x 2^31 pixels", ["train", "dcgan", *TINY, "--data",
         f"folder:{work / 'bomb'}", "--batch-size", "2", "--kimg", "0.004", "--run-dir",
         str(work / "bomb-run")], "0, bomb skipped", {}),
        (dat, "npz: object array (a pickle trap)", ["train", "dcgan", *TINY, "--data",
         f"npz:{work / 'object.npz'}", "--run-dir", str(work / "obj-run")], "2", {}),
        (dat, "npz: header declaring 10^27 elements", ["train", "dcgan", *TINY, "--data",
         f"npz:{work / 'huge-header.npz'}", "--run-dir", str(work / "hdr-run")], "2", {}),
        (dat, "resolution 2^40", ["train", "dcgan", "--data", f"npz:{work / 'digits.npz'}",
         "--resolution", str(2**40), "--run-dir", str(work / "res-run")], "2", {}),
        (dat, "config: --set kimg=1e400", ["train", "dcgan", "--set", "kimg=1e400", "--dry-run"],
         "2", {}),
        (dat, "CLI: a flag with control characters", ["train", "dcgan", "--bad\x1b[2Jflag"], "2",
         {}),
    ]  # fmt: skip
    return cases


def _check(expected: str, rc: int, out: str, err: str, work: Path) -> tuple[bool, list[str]]:
    notes: list[str] = []
    want = int(expected.split()[0].rstrip(","))
    ok = rc == want and "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if want == 2 and ok:
        ok = len(lines) == 1 and lines[0].startswith("gankit: error:")
    if "warning" in expected:
        ok = ok and any(ln.startswith("gankit: warning:") for ln in lines)
    if "no folder" in expected:
        left = sorted(p.name for p in work.iterdir() if p.name.startswith((".many", "many")))
        notes.append(f"left behind: {left or 'nothing'}")
        ok = ok and not left
    if "file kept" in expected:
        ok = ok and (work / "existing.png").read_bytes() == b"keep me"
    if "\\x1b" in expected:
        ok = ok and "\x1b" not in out + err and "\\x1b" in out
    if "never unpickled" in expected:
        ok = ok and not (work / "PWNED").exists()
    if "skipped" in expected:
        ok = ok and "skipped" in out + err
        notes += [ln.strip() for ln in (out + err).splitlines() if "skipped" in ln][:1]
    return ok, notes


def markdown(doc: dict) -> str:
    """The results as the markdown table docs/robustness.md shows."""
    s = doc["summary"]
    m = doc["machine"]
    lines = [
        f"{s['cases']} cases, {s['as_expected']} as expected, {s['tracebacks']} tracebacks; "
        f"peak RSS of the hostile-checkpoint cases at most "
        f"{s['max_peak_rss_mib_hostile_checkpoints']:.0f} MiB ({s['seconds']:.0f} s in all; "
        f"{doc['date']}, Python {m['python']}, torch {m['torch']}, {m['cores']} cores). "
        "MiB is the process's peak RSS (0: an HTTP request to one server); W is the work folder.",
        "",
        "| group | case | exit / HTTP | traceback | MiB | first line |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        first = r["first_line"].replace("|", "\\|")[:110]
        tb = "yes" if r["traceback"] else "no"
        ok = "" if r["ok"] else " (unexpected)"
        lines.append(f"| {r['group']} | {r['case']} | {r['rc']}{ok} | {tb} | "
                     f"{r['peak_rss_mib']:.0f} | `{first}` |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_hostile.json")
    ap.add_argument("--only", help="run only the groups whose name contains this")
    ap.add_argument("--markdown", type=Path, help="print the table of a results JSON and stop")
    ap.add_argument("--make-files", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_files:
        return make_files(args.make_files)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return None
    results: list[Result] = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="gankit-hostile-") as tmp:
        work = Path(tmp)
        env = {**ENV, "GANKIT_CACHE": str(work / "cache")}
        subprocess.run([sys.executable, __file__, "--make-files", str(work)], check=True,
                       env=env, stdout=subprocess.DEVNULL)  # fmt: skip
        for group, case, argv, expected, opts in cli_cases(work):
            if args.only and args.only.lower() not in group.lower():
                continue
            rc, out, err, rss, secs = run(argv, cwd=work, **{"env": env, **opts})
            ok, notes = _check(expected, rc, out, err, work)
            shown = " ".join(a.replace(str(work), "W") for a in map(str, argv))
            results.append(Result(group, case, "gankit " + shown, expected, rc,
                                  _first_line(out, err).replace(str(work), "W"),
                                  "Traceback" in out + err, round(rss, 1), round(secs, 2), ok,
                                  notes))  # fmt: skip
            print(f"{'ok  ' if ok else 'FAIL'} rc={rc:<3} {rss:6.0f} MiB {secs:5.1f} s  {case}",
                  flush=True)  # fmt: skip
        if not args.only or "web" in args.only.lower():
            web_cases(work, results)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine_info import machine

    print()
    print(f"{'group':<28} {'case':<44} {'rc':>4} {'tb':>3} {'MiB':>6}  first line")
    for r in results:
        tb = "yes" if r.traceback else "no"
        print(f"{r.group[:28]:<28} {r.case[:44]:<44} {r.rc!s:>4} {tb:>3}"
              f" {r.peak_rss_mib:6.0f}  {r.first_line[:90]}")  # fmt: skip
    hostile_ckpt = [r for r in results if r.group.startswith("Checkpoint")]
    summary = {
        "cases": len(results),
        "as_expected": sum(r.ok for r in results),
        "tracebacks": sum(r.traceback for r in results),
        "max_peak_rss_mib_hostile_checkpoints": max((r.peak_rss_mib for r in hostile_ckpt),
                                                     default=0.0),
        "seconds": round(time.time() - t_start, 1),
    }  # fmt: skip
    print(json.dumps(summary))
    doc = {"command": "python benchmarks/hostile.py", "machine": machine(), "summary": summary,
           "date": time.strftime("%Y-%m-%d"), "results": [asdict(r) for r in results]}  # fmt: skip
    args.out.write_text(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
    print(f"wrote {args.out}")
    if summary["as_expected"] != summary["cases"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
