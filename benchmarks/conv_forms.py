"""Where DCGAN-64's fp32 training step goes, layer by layer, and whether another way of computing
its 4x4 convolutions would be faster on this machine.

For every convolution of DCGAN-64 (batch 128, fp32, channels_last) it times torch's own
convolution (oneDNN on the CPU) for the three passes a training step needs: the forward, the
input gradient (dx) and the weight gradient (dw), and reports GFLOP/s against the machine's
peak measured in the same run. From these it adds up the convolution time of one training step
(D: 3 forwards (real, fake, fake in G's update), 2 weight gradients, 1 input gradient; G: 1 of
each, no input gradient for its first layer) to show how much of a step is convolution.

It then times, forward + both gradients, two other formulations with the same maths, written
with differentiable torch ops (so autograd, double backward and DDP would work unchanged):
- "im2col": `unfold` + one large matmul (transposed convolutions: matmul + `fold`);
- "space-to-depth" (strided convolutions only): `pixel_unshuffle` of the padded input, then a
  2x2 stride-1 convolution with 4x the input channels and rearranged weights.
Each is checked against torch's result (max error relative to the output's largest value).

Last, `torch.profiler` over 3 real steps of gankit's trainer (fp32 defaults) splits a step's
self CPU time into convolutions, batch norm, activations, the optimiser and EMA, and the rest.

    python benchmarks/conv_forms.py                       # -> docs/bench_conv_forms.json
    python benchmarks/conv_forms.py --batch 16 --reps 1 --out /tmp/c.json   # quick check
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from machine_info import machine  # benchmarks/ is on sys.path
from speed import peak_gflops

ROOT = Path(__file__).resolve().parent.parent
# DCGAN-64 (nz 100, width 64, 3 channels): name, transposed, in ch, out ch, input side, stride, pad
LAYERS = [
    ("D1", False, 3, 64, 64, 2, 1),
    ("D2", False, 64, 128, 32, 2, 1),
    ("D3", False, 128, 256, 16, 2, 1),
    ("D4", False, 256, 512, 8, 2, 1),
    ("D5", False, 512, 1, 4, 1, 0),
    ("G1", True, 100, 512, 1, 1, 0),
    ("G2", True, 512, 256, 4, 2, 1),
    ("G3", True, 256, 128, 8, 2, 1),
    ("G4", True, 128, 64, 16, 2, 1),
    ("G5", True, 64, 3, 32, 2, 1),
]
# How many times a training step runs each pass of a layer (see the docstring).
USES = {"D": {"fwd": 3, "dw": 2, "dx": 1}, "G": {"fwd": 1, "dw": 1, "dx": 1}}


def timed(fn: Callable[[], object], reps: int) -> float:
    """Seconds per call, after one untimed call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def im2col_conv(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """conv2d as unfold + one matmul whose rows are output pixels (channels_last result)."""
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    cols = F.unfold(x, k, padding=pad, stride=stride).transpose(1, 2).reshape(b * oh * ow, -1)
    return (cols @ w.reshape(o, -1).t()).view(b, oh, ow, o).permute(0, 3, 1, 2)


def im2col_conv_transpose(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """conv_transpose2d as one matmul (input pixels x weights) + fold (col2im)."""
    b, c, h, wd = x.shape
    _, o, k, _ = w.shape
    oh, ow = (h - 1) * stride - 2 * pad + k, (wd - 1) * stride - 2 * pad + k
    cols = (x.permute(0, 2, 3, 1).reshape(b * h * wd, c) @ w.reshape(c, -1)).view(b, h * wd, -1)
    return F.fold(cols.transpose(1, 2), (oh, ow), k, padding=pad, stride=stride)


def space_to_depth_conv(x: torch.Tensor, w: torch.Tensor, stride: int, pad: int) -> torch.Tensor:
    """A 4x4 stride-2 conv as a 2x2 stride-1 conv over pixel_unshuffle(pad(x)): tap (2a+i, 2b+j)
    of the kernel reads phase (i, j) of the unshuffled input at offset (a, b)."""
    assert stride == 2 and w.shape[-1] == 4
    o, c = w.shape[:2]
    u = F.pixel_unshuffle(F.pad(x, (pad,) * 4), 2).contiguous(memory_format=torch.channels_last)
    w2 = w.reshape(o, c, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, c * 4, 2, 2)
    return F.conv2d(u, w2.contiguous(memory_format=torch.channels_last))


def layer_row(spec: tuple, batch: int, reps: int, peak: float) -> dict:
    """Torch's three passes for one layer, then the alternative forms' forward + gradients."""
    name, tr, ci, co, side, st, pad = spec
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(batch, ci, side, side, generator=g).to(memory_format=cl).requires_grad_()
    wshape = (ci, co, 4, 4) if tr else (co, ci, 4, 4)
    w = (torch.randn(wshape, generator=g) * 0.02).to(memory_format=cl).requires_grad_()

    def native() -> torch.Tensor:
        f = F.conv_transpose2d if tr else F.conv2d
        return f(x, w, stride=st, padding=pad)

    y = native()
    gy = torch.randn(y.shape, generator=g).to(memory_format=cl)
    macs = ci * co * 16 * (side * side if tr else y.shape[-1] * y.shape[-2])
    gflop = 2 * batch * macs / 1e9
    args = (gy, x.detach(), w.detach(), None, [st, st], [pad, pad], [1, 1], tr, [0, 0], 1)
    row: dict = {"layer": name, "transposed": tr, "in": ci, "out": co, "side": side}
    row["gflop_per_pass"] = gflop
    with torch.no_grad():
        row["fwd_ms"] = 1e3 * timed(native, reps)
    for key, mask in (("dx_ms", [True, False, False]), ("dw_ms", [False, True, False])):
        row[key] = 1e3 * timed(lambda m=mask: torch.ops.aten.convolution_backward(*args, m), reps)
    for p in ("fwd", "dx", "dw"):
        row[f"{p}_fraction_of_peak"] = gflop / (row[f"{p}_ms"] / 1e3) / peak

    def fwd_bwd(f: Callable[[], torch.Tensor]) -> Callable[[], object]:
        return lambda: torch.autograd.grad(f(), (x, w), gy)

    forms = {"torch": native}
    if tr:
        forms["im2col"] = lambda: im2col_conv_transpose(x, w, st, pad)
    else:
        forms["im2col"] = lambda: im2col_conv(x, w, st, pad)
        if st == 2:
            forms["space-to-depth"] = lambda: space_to_depth_conv(x, w, st, pad)
    row["forms"] = {}
    for form, f in forms.items():
        with torch.no_grad():
            err = ((f() - y).abs().max() / y.abs().max()).item()
        row["forms"][form] = {"fwd_bwd_ms": 1e3 * timed(fwd_bwd(f), reps), "rel_err": err}
    return row


CATEGORIES = {  # profiler op name fragment -> category; first match wins
    "convolution": "convolution",
    "batch_norm": "batch norm",
    "leaky_relu": "activations",
    "threshold": "activations",
    "tanh": "activations",
    "adam": "optimiser + EMA",
    "lerp": "optimiser + EMA",
}


def profile_step(batch: int, steps: int = 3) -> dict:
    """Self CPU time of `steps` trainer steps (DCGAN-64, fp32 defaults), by category."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    from gankit.config import RunConfig, TrainConfig
    from gankit.data.base import ImageDataset
    from gankit.training.trainer import Trainer

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * 4, 3, 64, 64), generator=g, dtype=torch.uint8)
    ds = ImageDataset(images=images, labels=None, num_classes=0, name="random")
    train = TrainConfig(model="dcgan", batch_size=batch, kimg=1e6, device="cpu")
    rc = RunConfig(model="dcgan", model_config={"resolution": 64, "channels": 3}, train=train)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(rc, tmp, ds, progress=False, tensorboard=False)
        tr.train_step()
        tr.train_step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                tr.train_step()
    split: dict[str, float] = {}
    for ev in prof.key_averages():
        name = ev.key.lower()
        cat = next((c for k, c in CATEGORIES.items() if k in name), "other")
        split[cat] = split.get(cat, 0.0) + ev.self_cpu_time_total / 1e3 / steps
    return {"steps": steps, "ms_per_step": sum(split.values()), "self_ms_per_step": split}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5, help="timed calls per measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_conv_forms.json")
    args = ap.parse_args()
    peak = {d: peak_gflops(d) for d in ("fp32", "bf16")}
    print(f"peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)
    rows = [layer_row(spec, args.batch, args.reps, peak["fp32"]) for spec in LAYERS]

    print(f"\nDCGAN-64, batch {args.batch}, fp32, channels_last: torch's convolutions")
    head = ["layer", "in -> out @ side", "GFLOP", "fwd ms (of peak)", "dx ms (of peak)"]
    print("| " + " | ".join([*head, "dw ms (of peak)"]) + " |")
    print("|---|---|---|---|---|---|")
    step_ms = 0.0
    for r in rows:
        cells = [
            f"{r[p + '_ms']:.1f} ({r[p + '_fraction_of_peak']:.0%})" for p in ("fwd", "dx", "dw")
        ]
        shape = f"{r['in']} -> {r['out']} @ {r['side']}"
        print(f"| {r['layer']} | {shape} | {r['gflop_per_pass']:.2f} | " + " | ".join(cells) + " |")
        uses = dict(USES[r["layer"][0]])
        if r["layer"] == "G1":
            uses["dx"] = 0  # the latent takes no gradient
        step_ms += sum(n * r[f"{p}_ms"] for p, n in uses.items())
    print(f"\nconvolution time of one training step (sum of the passes it runs): {step_ms:.0f} ms")

    print("\nforward + dx + dw, ms (max error relative to the output's largest value)")
    print("| layer | torch | im2col | space-to-depth |")
    print("|---|---|---|---|")
    for r in rows:
        cells = []
        for form in ("torch", "im2col", "space-to-depth"):
            f = r["forms"].get(form)
            cells.append("-" if f is None else f"{f['fwd_bwd_ms']:.1f} ({f['rel_err']:.0e})")
        print(f"| {r['layer']} | " + " | ".join(cells) + " |")

    prof = profile_step(args.batch)
    total = prof["ms_per_step"]
    print(f"\ntorch.profiler, {prof['steps']} trainer steps (fp32 defaults): {total:.0f} ms a step")
    for cat, ms in sorted(prof["self_ms_per_step"].items(), key=lambda kv: -kv[1]):
        print(f"  {cat:<16} {ms:7.0f} ms  {ms / total:5.1%}")

    doc = {
        "benchmark": "conv_forms",
        "machine": machine(),
        "batch": args.batch,
        "reps": args.reps,
        "peak_gflops": peak,
        "step_convolution_ms": step_ms,
        "profile": prof,
        "date": time.strftime("%Y-%m-%d"),
        "layers": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
