"""Checkpoints: atomic, verified, never unpickled, complete enough to resume; and metadata
that is checked against the tensors, not trusted (issue 17).

The forged files below carry a *valid* checksum, recomputed the way gankit computes it (what
any author of a hostile file can do): the checks on the metadata are the defence, the checksum
only catches accidents.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gankit.checkpoint import (
    FORMAT_VERSION,
    list_checkpoints,
    load_checkpoint,
    pack_optimizer,
    read_checkpoint,
    save_checkpoint,
    unpack_optimizer,
)
from gankit.errors import UserError
from tests.forging import forge, read_raw, sha256_v2

FIXTURES = Path(__file__).parent / "fixtures" / "v1"  # runs written before issue 17 (format 1)
DCGAN_NEW = FIXTURES / "dcgan" / "checkpoints" / "ckpt-000000064.safetensors"
STYLEGAN_NEW = FIXTURES / "stylegan" / "checkpoints" / "ckpt-000000064.safetensors"


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "G.w": torch.randn(3, 4, generator=g),
        "G.n": torch.tensor(5),
        "D.b": torch.randint(0, 9, (7,), generator=g),
    }


def test_round_trip_keeps_tensors_and_json(tmp_path):
    t = _tensors()
    save_checkpoint(
        tmp_path / "a.safetensors", t, {"model": "dcgan", "nimg": 64, "nested": {"x": [1, 2]}}
    )
    ck = read_checkpoint(tmp_path / "a.safetensors")
    assert ck.meta["model"] == "dcgan" and ck.meta["nested"] == {"x": [1, 2]}
    assert ck.meta["format_version"] == FORMAT_VERSION == 2 and len(ck.meta["sha256"]) == 64
    torch.testing.assert_close(ck.tensors, t, rtol=0, atol=0)
    assert set(ck.part("G")) == {"w", "n"}


def test_a_changed_byte_fails_the_checksum(tmp_path):
    p = tmp_path / "a.safetensors"
    save_checkpoint(p, _tensors(), {"model": "dcgan"})
    data = bytearray(p.read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's bytes
    p.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        read_checkpoint(p)


def test_truncated_file_is_refused(tmp_path):
    p = tmp_path / "a.safetensors"
    save_checkpoint(p, _tensors(), {"model": "dcgan"})
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(UserError, match="not a readable safetensors checkpoint"):
        read_checkpoint(p)


def test_foreign_safetensors_is_refused(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(UserError, match="not a gankit checkpoint"):
        read_checkpoint(p)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps({"G.w": _Payload(marker)}))
    with pytest.raises(UserError):
        read_checkpoint(p)
    assert not marker.exists()
    torch.save({"w": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UserError):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_run_folder_loads_newest_sound_checkpoint(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "dcgan", run)  # checkpoints at 32 and 64 images
    (run / "checkpoints" / ".ckpt-000000192.safetensors.x.tmp").write_bytes(b"partial")
    assert [p.name for p in list_checkpoints(run)] == [
        "ckpt-000000032.safetensors",
        "ckpt-000000064.safetensors",
    ]
    assert load_checkpoint(run).meta["nimg"] == 64
    newest = run / "checkpoints" / "ckpt-000000064.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert load_checkpoint(run).meta["nimg"] == 32
    assert len(w) == 1 and "damaged" in str(w[0].message)


def test_a_file_without_a_run_config_is_not_a_run(tmp_path):
    """Bare tensors read back (tests and tools use that), but no command loads them as a run:
    nothing could be built from them."""
    p = tmp_path / "bare.safetensors"
    save_checkpoint(p, _tensors(), {"model": "dcgan"})
    assert read_checkpoint(p).config is None
    with pytest.raises(UserError, match="without a run config"):
        load_checkpoint(p)


def test_empty_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_optimizer_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    tensors, meta = pack_optimizer("optim.G", opt)
    save_checkpoint(tmp_path / "o.safetensors", tensors, {"optim": meta})
    ck = read_checkpoint(tmp_path / "o.safetensors")
    net2 = torch.nn.Linear(3, 2)
    net2.load_state_dict(net.state_dict())
    opt2 = torch.optim.Adam(net2.parameters(), lr=5.0)
    unpack_optimizer("optim.G", opt2, ck.tensors, ck.meta["optim"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    torch.testing.assert_close(a["state"], b["state"], rtol=0, atol=0)
    x = torch.randn(4, 3)
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x).square().sum().backward()
        o.step()
    torch.testing.assert_close(net.state_dict(), net2.state_dict(), rtol=0, atol=0)


def test_a_newer_format_version_is_refused(tmp_path):
    import json

    p = tmp_path / "a.safetensors"
    save_checkpoint(p, _tensors(), {"model": "dcgan"})
    with safe_open(str(p), framework="pt") as f:
        meta = json.loads(f.metadata()["gankit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta["format_version"] = 99
    save_file(tensors, str(p), metadata={"gankit": json.dumps(meta)})
    with pytest.raises(UserError, match="format 99, newer than this gankit reads"):
        read_checkpoint(p)


def test_the_cli_never_unpickles_what_it_is_given(tmp_path, digits_run, capsys):
    """A pickle dropped into a run folder as its newest checkpoint, or passed directly (as
    .safetensors, .pt or .ckpt), is refused; the payload's code never runs."""
    import shutil

    from gankit.cli import main

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    evil = run / "checkpoints" / "ckpt-999999999.safetensors"
    evil.write_bytes(pickle.dumps({"G.w": _Payload(marker)}))
    showwarning = warnings.showwarning
    try:
        rc = main(["sample", str(run), "--out", str(tmp_path / "s.png"), "--seeds", "0-3"])
    finally:
        warnings.showwarning = showwarning  # main() installs its one-line format
    assert rc == 0 and (tmp_path / "s.png").is_file()  # the older, sound checkpoint served
    assert "skipped 1 damaged or invalid checkpoint(s)" in capsys.readouterr().err
    for name in ("evil.safetensors", "evil.pt", "evil.ckpt"):
        bad = tmp_path / name
        if name.endswith(".pt"):
            torch.save({"w": _Payload(marker)}, bad)
        else:
            bad.write_bytes(pickle.dumps({"w": _Payload(marker)}))
        rc = main(["sample", str(bad), "--out", str(tmp_path / "t.png")])
        assert rc == 2 and "never unpickles" in capsys.readouterr().err
    assert not marker.exists(), "no payload ran"


# ----------------------------------------------------------------------------- untrusted metadata


_read_raw, _sha256_v2, _forge = read_raw, sha256_v2, forge


def _mc(meta: dict[str, Any]) -> dict[str, Any]:
    return meta["run_config"]["model_config"]


def _rename_model(meta: dict[str, Any], name: str) -> None:
    meta["model"] = meta["run_config"]["model"] = meta["run_config"]["train"]["model"] = name


def _first(tensors: dict[str, torch.Tensor], prefix: str) -> str:
    return next(k for k in sorted(tensors) if k.startswith(prefix) and tensors[k].dim() >= 2)


def _reshape_first_weight(tensors: dict[str, torch.Tensor]) -> None:
    key = _first(tensors, "G.")
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, *tensors[key].shape[1:])


def _drop_first_d_weight(tensors: dict[str, torch.Tensor]) -> None:
    del tensors[_first(tensors, "D.")]


def _reshape_adam_moment(tensors: dict[str, torch.Tensor]) -> None:
    tensors["optim.G.0.exp_avg"] = torch.zeros(3, 3)


# id -> (source, metadata edit, tensors edit, what the error says)
FORGED: dict[str, tuple[Path, Any, Any, str]] = {
    "ngf=1000000": (DCGAN_NEW, lambda m: _mc(m).update(ngf=1_000_000), None, "GiB to train"),
    "resolution=2**20": (
        DCGAN_NEW, lambda m: _mc(m).update(resolution=2**20), None, "GiB to train",
    ),
    "unknown model": (DCGAN_NEW, lambda m: _rename_model(m, "nosuchgan"), None, "unknown model"),
    "unknown config key": (
        DCGAN_NEW, lambda m: _mc(m).update(bogus=1), None, "unknown dcgan option 'bogus'",
    ),
    "config value of a wrong type": (
        DCGAN_NEW, lambda m: _mc(m).update(ngf="8"), None, "ngf must be int",
    ),
    "unknown training key": (
        DCGAN_NEW, lambda m: m["run_config"]["train"].update(bogus=1), None, "unknown training",
    ),
    "wrong tensor shape": (DCGAN_NEW, None, _reshape_first_weight, r"has shape \[9, "),
    "missing tensor": (DCGAN_NEW, None, _drop_first_d_weight, "is missing"),
    "unexpected tensor": (
        DCGAN_NEW, None, lambda t: t.update({"G.extra": torch.zeros(2)}), "unexpected tensor",
    ),
    "optimiser moment of a wrong shape": (
        DCGAN_NEW, None, _reshape_adam_moment, "parameter 0 of G",
    ),
    "a layer count of 10**7": (
        STYLEGAN_NEW, lambda m: _mc(m).update(mapping_layers=10**7), None, "layers",
    ),
    "a negative image count": (DCGAN_NEW, lambda m: m.update(nimg=-16), None, "nimg must be"),
    "objective state of another objective": (
        DCGAN_NEW, lambda m: m.update(objective_state={"k": 0.5}), None, "objective_state",
    ),
}  # fmt: skip


def test_format_2_checksum_covers_tensors_and_document(tmp_path):
    """What save_checkpoint writes is the scheme `_sha256_v2` spells out (so the forgeries
    below are exactly what a hostile author could make), and a forgery with no edit loads."""
    meta, tensors = _read_raw(DCGAN_NEW)
    for key in ("format", "format_version", "sha256"):
        meta.pop(key)
    out = save_checkpoint(tmp_path / "re.safetensors", tensors, meta)
    written, _ = _read_raw(out)
    assert written["format_version"] == 2 and written["sha256"] == _sha256_v2(tensors, written)
    ck = read_checkpoint(_forge(DCGAN_NEW, tmp_path / "same.safetensors"))
    assert ck.config is not None and ck.config.model_config["ngf"] == 8


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("case", list(FORGED))
def test_forged_metadata_with_a_valid_checksum_is_refused(tmp_path, case, version):
    """Each forgery is refused with one line naming the file and what does not fit, at once:
    the networks are only ever counted on the meta device, never allocated."""
    src, meta_edit, tensors_edit, says = FORGED[case]
    bad = _forge(src, tmp_path / "forged.safetensors", meta_edit, tensors_edit, version)
    started = time.perf_counter()
    with pytest.raises(UserError, match=says) as err:
        read_checkpoint(bad)
    assert time.perf_counter() - started < 5  # an allocation of GBs, or 10**7 layers, takes longer
    message = str(err.value)
    assert message.startswith(str(bad)) and "\n" not in message
    with pytest.raises(UserError, match=says):
        load_checkpoint(bad)  # what every command calls


def test_a_forged_newest_checkpoint_falls_back_to_the_sound_one(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "dcgan", run)
    newest = run / "checkpoints" / "ckpt-000000064.safetensors"
    _forge(DCGAN_NEW, newest, lambda m: _mc(m).update(ngf=1_000_000), version=1)  # the issue
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ck = load_checkpoint(run)
    assert ck.nimg == 32 and ck.path.name == "ckpt-000000032.safetensors"
    assert len(w) == 1
    message = str(w[0].message)
    assert "\n" not in message and newest.name in message and "GiB to train" in message
    assert "loaded ckpt-000000032.safetensors" in message


def test_metadata_damage_is_caught_by_the_format_2_checksum(tmp_path):
    """A flipped digit in the JSON (still valid JSON, still the old checksum) of a format-2
    file fails the checksum; format 1's checksum did not cover the document."""
    meta, tensors = _read_raw(DCGAN_NEW)
    p = save_checkpoint(tmp_path / "a.safetensors", tensors, meta)
    read_checkpoint(p)
    data = bytearray(p.read_bytes())
    at = data.index(b'saved_at\\": \\"2') + len(b'saved_at\\": \\"')  # the year's first digit
    data[at] = ord("3")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    assert _read_raw(damaged)[0]["saved_at"].startswith("3")  # the JSON still parses
    with pytest.raises(UserError, match="fails its checksum") as err:
        read_checkpoint(damaged)
    assert str(damaged) in str(err.value)


def test_metadata_that_is_not_json_is_damage_not_a_traceback(tmp_path):
    meta, tensors = _read_raw(DCGAN_NEW)
    p = tmp_path / "a.safetensors"
    save_file(tensors, str(p), metadata={"gankit": json.dumps(meta)[:-5]})
    with pytest.raises(UserError, match="not valid JSON: the file is damaged"):
        read_checkpoint(p)
    meta["format_version"] = "two"
    save_file(tensors, str(p), metadata={"gankit": json.dumps(meta)})
    with pytest.raises(UserError, match="invalid checkpoint format version"):
        read_checkpoint(p)


# Runs gankit commands in a fresh process: each command's exit code and stderr, and the peak
# memory of the whole process (VmHWM: ru_maxrss would count the forked copy of pytest). The
# address-space limit is only a safety net, so that a failing check cannot take the test
# machine down with it.
_CHILD = """
import contextlib, io, json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
from gankit.cli import main
out = []
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException:
            rc, _ = -1, err.write(traceback.format_exc())
    out.append({"rc": rc, "stderr": err.getvalue()})
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss = 1024 * (int(hwm[0].split()[1]) if hwm else peak)
open(sys.argv[1], "w").write(json.dumps({"commands": out, "peak_rss": rss}))
"""


def run_commands(tmp_path: Path, *commands: list[str]) -> dict[str, Any]:
    """Run gankit commands in one fresh process (see `_CHILD`)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(report), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.is_file(), proc.stderr[-2000:]
    return json.loads(report.read_text())


def test_the_cli_refuses_forged_files_in_one_line_without_allocating(tmp_path):
    """`gankit sample` on a forged ngf or resolution, and `train --resume` of a run that
    stopped before its first checkpoint with a forged config.json: exit code 2, one line, no
    traceback, and the process stays well under 1 GiB (before the fix: 25 GB / 35 TB asked)."""
    # format 1 with the tensors untouched is the issue's own file; format 2 is the new one
    ngf = _forge(
        DCGAN_NEW, tmp_path / "ngf.safetensors", lambda m: _mc(m).update(ngf=10**6), version=1
    )
    res = _forge(DCGAN_NEW, tmp_path / "res.safetensors", lambda m: _mc(m).update(resolution=2**20))
    unstarted = tmp_path / "unstarted"
    unstarted.mkdir()
    doc = json.loads((FIXTURES / "dcgan" / "config.json").read_text())
    doc["run_config"]["model_config"]["ngf"] = 10**6
    (unstarted / "config.json").write_text(json.dumps(doc))
    out = tmp_path / "s.png"
    report = run_commands(
        tmp_path,
        ["sample", str(ngf), "--out", str(out), "--seeds", "0-3"],
        ["sample", str(res), "--out", str(out), "--seeds", "0-3"],
        ["train", "--resume", str(unstarted), "--kimg", "1", "--no-progress"],
    )
    for result, named in zip(report["commands"], (ngf, res, unstarted), strict=True):
        assert result["rc"] == 2, result
        lines = result["stderr"].strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result["stderr"], result
        assert lines[0].startswith("gankit: error:") and str(named) in lines[0], lines
        assert "GiB to train" in lines[0], lines
    assert report["peak_rss"] < 2**30, report["peak_rss"]
    assert not out.exists()
    assert [p.name for p in unstarted.iterdir()] == ["config.json"]  # nothing written
