"""The trainer: exact resume, EMA, progress artefacts, sampling from what it saved."""

from __future__ import annotations

import functools
import json
import math
import time

import pytest
import torch

from gankit.checkpoint import list_checkpoints, load_checkpoint
from gankit.config import RunConfig, TrainConfig, apply_overrides
from gankit.latent import seed_latents
from gankit.models import create_model, list_models
from gankit.sampling import generate, load, parse_seeds
from gankit.training.ema import ema_beta, make_ema, update_ema
from gankit.training.trainer import Trainer
from tests.conftest import synthetic_dataset, tiny_overrides


def _rc(name: str, **train) -> RunConfig:
    base = TrainConfig(
        model=name,
        batch_size=16,
        log_every=1,
        sample_every_kimg=0.032,
        ckpt_every_kimg=10.0,
        ema_kimg=0.05,
    )
    return RunConfig(
        model=name, model_config=tiny_overrides(name), train=apply_overrides(base, train)
    )


def _final_tensors(run_dir):
    return load_checkpoint(run_dir).tensors


@pytest.mark.parametrize("name", list_models())
def test_resume_is_exact(name, tmp_path):
    """N steps + resume + N steps gives the same weights as 2N steps straight."""
    ds = synthetic_dataset(n=48)  # 3 batches per epoch: the resume crosses epochs
    straight = tmp_path / "straight"
    Trainer(_rc(name, kimg=0.128), straight, ds, progress=False, tensorboard=False).train()

    split = tmp_path / "split"
    first = Trainer(_rc(name, kimg=0.064), split, ds, progress=False, tensorboard=False)
    first.train()
    assert first.step == 4
    ck = load_checkpoint(split)
    torch.manual_seed(999)  # the resumed run must not depend on the caller's RNG
    resumed = Trainer(
        _rc(name, kimg=0.128), split, ds, resume=ck, progress=False, tensorboard=False
    )
    assert resumed.nimg == 64
    resumed.train()
    a, b = _final_tensors(straight), _final_tensors(split)
    assert set(a) == set(b)
    for key in a:
        if key.startswith("rng."):
            continue
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    # the metrics log holds each step once, as if the run had not stopped
    recs = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == list(range(1, 9))


def test_run_folder_artefacts(tmp_path):
    ds = synthetic_dataset(n=64)
    res = Trainer(_rc("dcgan", kimg=0.128), tmp_path, ds, progress=False, tensorboard=False).train()
    assert res.nimg == 128 and res.steps == 8
    for f in (
        "metrics.jsonl",
        "losses.png",
        "progress.gif",
        "samples/reals.png",
        "samples/fakes000000000.png",
        "samples/fakes000000128.png",
    ):
        assert (tmp_path / f).is_file(), f
    assert len(list_checkpoints(tmp_path)) == 1
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    for k in ("loss_d", "loss_g", "d_real", "d_fake", "img_per_s", "kimg"):
        assert k in rec
    ck = load_checkpoint(tmp_path)
    assert ck.meta["nimg"] == 128 and ck.meta["step"] == 8
    assert ck.has("G") and ck.has("D") and ck.has("G_ema") and ck.has("optim.G")
    assert ck.meta["objective"] == "nonsaturating"


def test_old_checkpoints_are_pruned(tmp_path):
    ds = synthetic_dataset(n=64)
    Trainer(
        _rc("dcgan", kimg=0.128, ckpt_every_kimg=0.032, keep_checkpoints=2),
        tmp_path,
        ds,
        progress=False,
        tensorboard=False,
    ).train()
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt-000000096.safetensors",
        "ckpt-000000128.safetensors",
    ]


class FakeClock:
    """Stands in for a module's `time`: perf_counter reads `now`, which only the test moves,
    so what a time limit or a timing does follows from events, not from the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_max_seconds_stops_with_a_checkpoint(tmp_path, monkeypatch):
    from gankit.training import loop

    ds = synthetic_dataset(n=64)
    tr = Trainer(
        _rc("dcgan", kimg=1000.0, max_seconds=0.5), tmp_path, ds, progress=False, tensorboard=False
    )
    clock, step = FakeClock(), tr.train_step

    def timed_step():  # 0.2 s a step, and no time passes otherwise
        logs = step()
        clock.now += 0.2
        return logs

    monkeypatch.setattr(tr, "train_step", timed_step)
    monkeypatch.setattr(loop, "time", clock)
    res = tr.train()
    assert res.stopped_early and res.nimg == 3 * 16  # the first step to end past 0.5 s
    assert load_checkpoint(tmp_path).nimg == res.nimg


def test_ema_half_life():
    # after `half_life` images the old weights count for one half
    beta = ema_beta(batch_size=100, nimg=10**9, half_life_kimg=1.0, rampup=None)
    assert beta**10 == pytest.approx(0.5)
    # early in training the rampup shortens the half-life
    assert ema_beta(100, 1000, 10.0, 0.05) < ema_beta(100, 10**9, 10.0, 0.05)


def test_update_ema_is_a_lerp_and_copies_buffers():
    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    E = make_ema(G)
    before = [p.clone() for p in E.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    G.train()(torch.randn(8, 2))  # moves BN running stats
    update_ema(E, G, beta=0.75)
    for pe, p0, p in zip(E.parameters(), before, G.parameters(), strict=True):
        torch.testing.assert_close(pe, 0.75 * p0 + 0.25 * p)
    torch.testing.assert_close(E[1].running_mean, G[1].running_mean)
    assert not any(p.requires_grad for p in E.parameters())


def test_samples_are_reproducible_per_seed(tmp_path):
    ds = synthetic_dataset(n=32)
    Trainer(_rc("cdcgan", kimg=0.032), tmp_path, ds, progress=False, tensorboard=False).train()
    run = load(tmp_path)
    assert run.used_ema and run.num_classes == 3
    a = generate(run, [3], [2])
    b = generate(run, [1, 2, 3, 4], [0, 1, 2, 0])
    torch.testing.assert_close(a[0], b[2], rtol=0, atol=1e-6)
    assert not torch.allclose(b[0], b[1])
    raw = load(tmp_path, ema=False)
    assert not raw.used_ema
    assert not torch.allclose(generate(raw, [3], [2]), a)


def test_parse_seeds():
    assert parse_seeds("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_seeds([5, 6]) == [5, 6]


def test_seed_latents_are_independent_of_their_neighbours():
    a = seed_latents([5], 16)
    b = seed_latents([1, 5, 9], 16)
    torch.testing.assert_close(a[0], b[1], rtol=0, atol=0)
    assert not torch.equal(b[0], b[1])


def test_truncation_resamples_within_the_threshold():
    z = seed_latents(range(200), 64, truncation=0.5)
    assert z.abs().max() <= 0.5
    # resampled, not rescaled: the values fill the interval rather than shrink the normal
    assert z.abs().max() > 0.45
    assert z.std() > 0.25
    free = seed_latents(range(200), 64)
    inside = free.abs() <= 0.5
    torch.testing.assert_close(z[inside], free[inside])  # untouched components stay


# The plain path every speed lever is checked against: fp32, NCHW, torch's one-weight-at-a-time
# Adam, no compilation, data indexed on the host.
PLAIN = {"channels_last": False, "optimizer_impl": "loop", "compile": False, "data_device": "cpu"}


def _three_steps(tmp_path, **train):
    ds = synthetic_dataset(n=48)
    rc = _rc("dcgan", kimg=1.0, **{**PLAIN, **train})
    tr = Trainer(rc, tmp_path, ds, progress=False, tensorboard=False)
    logs = [tr.train_step() for _ in range(3)]
    return tr, logs


@pytest.mark.parametrize(
    "train,rtol,atol",
    [
        # Same maths in another memory layout or optimizer kernel: fp32 rounding only. Three
        # Adam steps move a weight by up to 3 * lr = 6e-4, so atol 1e-5 can fail.
        ({"channels_last": True}, 1e-4, 1e-5),
        ({"optimizer_impl": "foreach"}, 1e-5, 1e-6),
        ({"optimizer_impl": "fused"}, 1e-5, 1e-6),
        ({"data_device": "auto"}, 0, 0),  # on the CPU the data already is on the device
        ({"compile": True}, 1e-4, 1e-5),  # inductor fuses ops: a different rounding order
        # bf16 forward passes (8-bit mantissa), fp32 master weights and losses
        ({"precision": "bf16"}, 0.05, 0.02),
        ({"precision": "bf16", "channels_last": True}, 0.05, 0.02),
        # the defaults: channels_last, fused Adam, data on the device
        ({k: TrainConfig.__dataclass_fields__[k].default for k in PLAIN}, 1e-4, 1e-5),
    ],
    ids=[
        "channels_last",
        "foreach",
        "fused",
        "data_device",
        "compile",
        "bf16",
        "bf16+channels_last",
        "defaults",
    ],  # fmt: skip
)
def test_speed_options_match_the_fp32_path(tmp_path, train, rtol, atol):
    ref, ref_logs = _three_steps(tmp_path / "ref")
    fast, fast_logs = _three_steps(tmp_path / "fast", **train)
    for a, b in zip(ref_logs, fast_logs, strict=True):
        for k in ("loss_d", "loss_g", "d_real", "d_fake"):
            torch.testing.assert_close(b[k].float(), a[k].float(), rtol=rtol, atol=atol)
    if rtol < 0.01:  # the fp32 levers: every weight and Adam moment after 3 steps
        a, _ = ref.state.pack()
        b, _ = fast.state.pack()
        for key in a:
            if not key.startswith("rng."):
                torch.testing.assert_close(b[key], a[key], rtol=rtol, atol=atol, msg=key)
    z = torch.randn(8, 8)
    ref.G.eval()
    fast.G.eval()
    torch.testing.assert_close(fast.G(z), ref.G(z), rtol=rtol, atol=atol)
    if "precision" in train:
        assert fast.amp_dtype == torch.bfloat16
    if train.get("channels_last"):
        w = next(m.weight for m in fast.D.modules() if isinstance(m, torch.nn.Conv2d))
        assert w.is_contiguous(memory_format=torch.channels_last)
    if train.get("optimizer_impl") == "fused":
        assert fast.opt_D.defaults["fused"]
    if train.get("compile"):
        assert fast.wrapped.G is not fast.G  # the step runs the compiled module


def test_bf16_updates_point_the_same_way_as_fp32(tmp_path):
    """bf16's loose tolerance above is near the size of 3 Adam steps, so also check that the
    weight changes themselves agree: cosine similarity of (after - before) per network."""
    ref, _ = _three_steps(tmp_path / "ref")
    fast, _ = _three_steps(tmp_path / "fast", precision="bf16")
    torch.manual_seed(ref.cfg.seed)
    start = create_model("dcgan", **tiny_overrides("dcgan"))
    for name in ("G", "D"):
        w0 = torch.cat([p.flatten() for p in getattr(start, name).parameters()])
        d_ref = torch.cat([p.flatten() for p in getattr(ref, name).parameters()]) - w0
        d_fast = torch.cat([p.flatten() for p in getattr(fast, name).parameters()]) - w0
        cos = torch.nn.functional.cosine_similarity(d_ref, d_fast, dim=0)
        assert d_ref.abs().max() > 1e-4  # the weights did move
        assert cos > 0.9, (name, float(cos))


def test_cpu_bf16_speedup_is_a_real_ratio_and_leaves_the_seeded_rng_alone():
    from gankit.device import cpu_bf16_speedup

    torch.manual_seed(123)
    state = torch.get_rng_state()
    ratio = cpu_bf16_speedup.__wrapped__()  # uncached: really measure
    # Its value is this machine's (and its load's): only that it is a ratio is checked here.
    assert math.isfinite(ratio) and ratio > 0, ratio
    assert torch.equal(torch.get_rng_state(), state)  # training's seeded stream is untouched


def test_cpu_bf16_speedup_is_fp32_time_over_bf16_time(monkeypatch):
    """A clock that moves only inside the convolution, 3 s in fp32 and 2 s under bf16
    autocast: the speed-up is 1.5, whatever the machine."""
    from gankit import device as dev

    clock, conv = FakeClock(), torch.nn.functional.conv2d

    def timed_conv(*args, **kwargs):
        clock.now += 2.0 if torch.is_autocast_enabled("cpu") else 3.0
        return conv(*args, **kwargs)

    monkeypatch.setattr(dev, "time", clock)
    monkeypatch.setattr(torch.nn.functional, "conv2d", timed_conv)
    assert dev.cpu_bf16_speedup.__wrapped__() == 1.5


@pytest.mark.parametrize("speedup", [0.6, 1.1, 2.0])
def test_auto_precision_takes_bf16_on_a_cpu_only_where_measured_faster(
    tmp_path, monkeypatch, speedup
):
    """`precision=auto` follows the measurement, not the CPU flags: on an AVX512-BF16 CPU
    without AMX bf16 ran at 0.6x fp32 (docs/speed.md), where bf16 would be a slowdown."""
    from gankit import device as dev

    monkeypatch.setattr(dev.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(dev.torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    fake = functools.cache(lambda: speedup)
    monkeypatch.setattr(dev, "cpu_bf16_speedup", fake)
    fake()  # as after a measurement, so that the event reports it
    rc = _rc("dcgan", kimg=0.032, precision="auto")
    tr = Trainer(rc, tmp_path / "run", synthetic_dataset(n=48), progress=False, tensorboard=False)
    tr.train()
    want = speedup >= dev.BF16_MIN_SPEEDUP
    assert (tr.amp_dtype == torch.bfloat16) == want
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    chosen = [e for e in events if e["event"] == "precision"]
    assert chosen == [
        {**chosen[0], "requested": "auto", "chosen": "bf16" if want else "fp32",
         "cpu_bf16_speedup": speedup}
    ]  # fmt: skip


def test_auto_precision_is_fp32_where_onednn_would_emulate_bf16(tmp_path, monkeypatch):
    from gankit import device as dev

    monkeypatch.setattr(dev.torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    measured = []
    monkeypatch.setattr(dev, "cpu_bf16_speedup", lambda: measured.append(1) or 9.0)
    assert dev.resolve_precision("auto", torch.device("cpu")) is None
    assert measured == []  # no point timing an emulation
    assert dev.resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    assert dev.resolve_precision("fp32", torch.device("cpu")) is None


def test_data_on_device_keeps_the_data_on_the_cpu_for_a_cpu_run():
    from gankit.training.build import data_on_device

    ds = synthetic_dataset(n=8)
    assert data_on_device(ds, torch.device("cpu"), "auto") is ds
    moved = ds.to("cpu")
    torch.testing.assert_close(moved.images, ds.images, rtol=0, atol=0)
    x, y = moved.batch(torch.tensor([3, 1]))
    torch.testing.assert_close(x, ds.batch(torch.tensor([3, 1]))[0])
    assert y.tolist() == [ds.labels[3].item(), ds.labels[1].item()]
