"""Checkpoints: atomic, verified, never unpickled, complete enough to resume."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from safetensors.torch import save_file

from gankit.checkpoint import (
    atomic_write_bytes,
    list_checkpoints,
    load_checkpoint,
    pack_optimizer,
    read_checkpoint,
    save_checkpoint,
    unpack_optimizer,
)
from gankit.errors import UserError


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
    assert ck.meta["format_version"] == 1 and len(ck.meta["sha256"]) == 64
    torch.testing.assert_close(ck.tensors, t, rtol=0, atol=0)
    assert set(ck.part("G")) == {"w", "n"}


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"one")
    atomic_write_bytes(tmp_path / "f.bin", b"two")
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


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
    save_checkpoint(run / "checkpoints" / "ckpt-000000064.safetensors", _tensors(1), {"nimg": 64})
    save_checkpoint(run / "checkpoints" / "ckpt-000000128.safetensors", _tensors(2), {"nimg": 128})
    (run / "checkpoints" / ".ckpt-000000192.safetensors.x.tmp").write_bytes(b"partial")
    assert [p.name for p in list_checkpoints(run)] == [
        "ckpt-000000064.safetensors",
        "ckpt-000000128.safetensors",
    ]
    assert load_checkpoint(run).meta["nimg"] == 128
    newest = run / "checkpoints" / "ckpt-000000128.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert load_checkpoint(run).meta["nimg"] == 64
    assert any("damaged" in str(x.message) for x in w)


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

    from safetensors import safe_open

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
    assert "skipped damaged checkpoint" in capsys.readouterr().err
    for name in ("evil.safetensors", "evil.pt", "evil.ckpt"):
        bad = tmp_path / name
        if name.endswith(".pt"):
            torch.save({"w": _Payload(marker)}, bad)
        else:
            bad.write_bytes(pickle.dumps({"w": _Payload(marker)}))
        rc = main(["sample", str(bad), "--out", str(tmp_path / "t.png")])
        assert rc == 2 and "never unpickles" in capsys.readouterr().err
    assert not marker.exists(), "no payload ran"
