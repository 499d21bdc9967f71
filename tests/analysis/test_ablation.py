"""Generator feature-map ablation and the channel finder (analysis/ablation.py, `gankit ablate`).

The finder is checked on a hand-built G whose channels are planted: one writes only into a
known corner (region mode), one drives the synthetic attribute (attribute mode).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from gankit.analysis.ablation import (
    ablate,
    ablation_experiment,
    find_attribute_channels,
    find_region_channels,
    generator_layers,
    get_layer,
    random_channels,
    rect_mask,
    render,
)
from gankit.cli import main
from gankit.errors import UserError
from gankit.models import create_model
from tests.conftest import tiny_overrides

CONV_MODELS = (
    "dcgan",
    "cdcgan",
    "lsgan",
    "wgan",
    "infogan",
    "lapgan",
    "began",
    "stylegan",
    "biggan",
)


def tiny_g(name: str = "dcgan") -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **tiny_overrides(name)).G.eval()


def latents(G: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))


class PlantedG(nn.Module):
    """z -> 8 channels at 4x4 -> ReLU -> 1x1 conv -> x4 upsample -> tanh: a 16x16 image.

    Channel `CORNER` can only fire in the top-left 2x2 cells (its bias elsewhere is -20), so it
    draws only into the image's top-left 8x8 pixels; channel `DRIVER` has the largest weight in
    the output, so it drives the image's mean brightness.
    """

    C, CORNER, DRIVER = 8, 3, 5

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.z_dim, self.num_classes = 6, 0
        self.fc = nn.Linear(6, self.C * 16)
        self.act = nn.ReLU()
        self.out = nn.Conv2d(self.C, 1, 1)
        with torch.no_grad():
            bias = self.fc.bias.view(self.C, 4, 4)
            bias.zero_()
            bias[self.CORNER] = -20.0
            bias[self.CORNER, :2, :2] = 2.0
            self.out.weight.fill_(0.2)
            self.out.weight[0, self.DRIVER] = 1.5
            self.out.bias.fill_(-0.5)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.fc(z).view(-1, self.C, 4, 4))
        return torch.tanh(nn.functional.interpolate(self.out(h), scale_factor=4))


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize("name", CONV_MODELS)
def test_layers_are_4d_maps_with_their_sizes(name: str) -> None:
    G = tiny_g(name)
    layers = generator_layers(G)
    assert layers and [L.index for L in layers] == list(range(len(layers)))
    seen: dict[int, tuple[int, ...]] = {}
    hooks = [
        L.module.register_forward_hook(lambda _m, _i, o, i=L.index: seen.update({i: o.shape}))
        for L in layers
    ]
    z = latents(G, 2)
    y = torch.zeros(2, dtype=torch.long) if G.num_classes else None
    with torch.no_grad():
        G(z, y)
    for h in hooks:
        h.remove()
    for L in layers:
        assert tuple(seen[L.index][1:]) == (L.channels, L.height, L.width)
        assert L.channels != 1  # the image's channel count: no output / to-RGB layer


@pytest.mark.parametrize("name", ("gan", "cgan"))
def test_fully_connected_g_has_no_layers_to_ablate(name: str) -> None:
    with pytest.raises(UserError, match="fully connected"):
        generator_layers(tiny_g(name))


# ----------------------------------------------------------------------------- ablate


def test_ablate_zeroes_the_channels_and_leaves_g_unchanged() -> None:
    G = tiny_g()
    z = latents(G, 4)
    layer = generator_layers(G)[1]
    plain = render(G, z)
    seen: list[torch.Tensor] = []
    with ablate(G, 1, [2, 5]) as lay:
        assert lay.name == layer.name
        # registered after the ablation hook, so it sees what the next layer sees
        h = layer.module.register_forward_hook(lambda _m, _i, o: seen.append(o.clone()))
        with torch.no_grad():
            ablated = G(z)
        h.remove()
    maps = seen[0]
    assert maps[:, [2, 5]].abs().max() == 0
    assert maps[:, [0, 1, 3, 4, 6, 7]].abs().sum() > 0  # the other channels are untouched
    assert (ablated - plain).abs().max() > 1e-4  # ablating changes the image
    torch.testing.assert_close(render(G, z), plain)  # the hook is gone afterwards
    with ablate(G, 1, []):
        torch.testing.assert_close(render(G, z), plain)  # no channel: no change
    torch.testing.assert_close(render(G, z, layer=1, channels=[2, 5]), ablated)


def test_bad_layer_and_channel_are_user_errors() -> None:
    G = tiny_g()
    with pytest.raises(UserError, match=r"layer 7 is out of range: this G has layers 0\.\.1"):
        get_layer(G, 7)
    with pytest.raises(UserError, match=r"channel 8 is out of range"), ablate(G, 1, [8]):
        pass
    with pytest.raises(UserError, match="region"):
        rect_mask([4, 4, 2, 8], 16, 16)


# ----------------------------------------------------------------------------- the finder


def test_region_finder_ranks_the_planted_corner_channel_first() -> None:
    G = PlantedG()
    z = latents(G, 64)
    corner = rect_mask([0, 0, 8, 8], 16, 16)
    found = find_region_channels(G, 0, z, corner, top=3)
    assert found.channels[0] == PlantedG.CORNER
    assert found.scores[0] > 3 * max(abs(s) for s in found.all_scores[: PlantedG.CORNER])
    # per-sample masks: the opposite corner for every sample puts the channel last
    masks = rect_mask([8, 8, 16, 16], 16, 16).expand(64, 16, 16)
    assert find_region_channels(G, 0, z, masks, top=8).channels[-1] == PlantedG.CORNER


def test_attribute_finder_finds_the_driving_channel() -> None:
    G = PlantedG()
    z = latents(G, 64)

    def brightness(images: torch.Tensor) -> torch.Tensor:
        return images.mean((1, 2, 3))

    corr = find_attribute_channels(G, 0, z, brightness, top=2)
    assert corr.channels[0] == PlantedG.DRIVER
    causal = find_attribute_channels(G, 0, z, brightness, top=2, causal=True)
    assert causal.channels[0] == PlantedG.DRIVER
    assert causal.scores[0] > 2 * causal.scores[1] > 0


def test_experiment_compares_with_random_channels_of_the_layer() -> None:
    G = PlantedG()
    assert random_channels(8, 3, [1, 2, 3], seed=0) != random_channels(8, 3, [1, 2, 3], seed=1)
    assert random_channels(8, 5, [1, 2, 3], seed=0) == [0, 4, 5, 6, 7]  # never the chosen
    r = ablation_experiment(G, 0, region=[0, 0, 8, 8], top=1, n=32, seeds=range(4), controls=3)
    assert r.channels == [PlantedG.CORNER]
    assert all(PlantedG.CORNER not in c for c in r.control_channels)
    m = r.measures["ablated"]
    assert m["pixel_change_inside"] > 0 and m["pixel_change_outside"] == 0
    assert r.before.shape == r.after.shape == r.control.shape == (4, 1, 16, 16)


# ----------------------------------------------------------------------------- the command


def _quiet(*argv: str | Path) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dcgan and a tiny MLP gan trained for 32 images on the digits, and a (weak) domain
    classifier of the digits trained for one short epoch."""
    from gankit.metrics.classifier import train_classifier

    base = tmp_path_factory.mktemp("ablate")
    tiny = ["--data", "digits", "--resolution", "16", "--no-progress", "--kimg", "0.032"]
    conv = ["--set", "ngf=8", "--set", "ndf=8", "--batch-size", "16"]
    assert _quiet("train", "dcgan", *tiny, *conv, "--run-dir", base / "dcgan") == 0
    assert _quiet("train", "gan", *tiny, "--batch-size", "16", "--run-dir", base / "gan") == 0
    clf = base / "clf.safetensors"
    train_classifier("digits", epochs=1, max_images=200, batch_size=64, out=clf, progress=False)
    return {"dcgan": base / "dcgan", "gan": base / "gan", "clf": clf}


def _png_ok(path: Path) -> None:
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG"


def test_cli_ablate_region_and_attribute_write_figure_and_report(runs, capsys, tmp_path):
    run = runs["dcgan"]
    assert main(["ablate", str(run), "--list"]) == 0
    assert "net.main.5" in capsys.readouterr().out
    args = ["--layer", "1", "--top", "2", "--n", "16", "--seeds", "0-3"]
    assert main(["ablate", str(run), *args, "--region", "0,0,8,8"]) == 0
    out = capsys.readouterr().out
    assert "top channels by region contrast" in out and "inside region" in out
    _png_ok(run / "ablation-layer1.png")
    report = json.loads((run / "ablation-layer1.json").read_text())
    assert report["mode"] == "region" and len(report["channels"]) == 2
    assert set(report["measures"]) >= {"ablated", "control"}

    png = tmp_path / "attr.png"
    attr = ["--attribute", "class=0", "--evaluator", str(runs["clf"]), "--out", str(png)]
    assert main(["ablate", str(run), *args, *attr]) == 0
    assert "classified as that class: before" in capsys.readouterr().out
    _png_ok(png)
    report = json.loads(png.with_suffix(".json").read_text())
    assert report["finder"]["method"] == "correlation"
    assert 0 <= report["measures"]["before"]["class_share"] <= 1


@pytest.mark.parametrize(
    ("model", "extra", "fragment"),
    [
        ("dcgan", ["--layer", "5", "--channels", "0"], "layer 5 is out of range"),
        ("dcgan", ["--layer", "1", "--channels", "99"], "channel 99 is out of range"),
        ("dcgan", ["--layer", "1", "--region", "0,0,40,8"], "0 <= x0 < x1 <= 16"),
        ("dcgan", ["--layer", "1", "--attribute", "digit=3"], "use class=K"),
        ("dcgan", ["--channels", "1"], "give --layer N"),
        ("gan", ["--list"], "fully connected"),
    ],
)
def test_cli_ablate_errors_are_one_line(runs, capsys, model, extra, fragment) -> None:
    run = runs[model]
    before = sorted(p.name for p in run.iterdir())
    assert main(["ablate", str(run), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == before


def test_ablate_run_and_its_lines_are_the_command(runs, capsys, tmp_path, monkeypatch) -> None:
    """`ablate_run` + `ablation_lines` print and write what `gankit ablate` does; `run_layers`
    is `--list`."""
    from gankit.analysis.ablation import (
        ablate_run,
        ablation_lines,
        format_layers,
        run_layers,
    )
    from tests.cli.test_cli import cli

    monkeypatch.chdir(tmp_path)
    run = runs["dcgan"]
    rc, out, err = cli(capsys, "ablate", run, "--list")
    assert rc == 0, err
    assert format_layers(run_layers(run)) + "\n" == out
    for how, extra in (("channels", ["--channels", "1,2"]), ("region", ["--region", "0,0,8,8"])):
        argv = ["--layer", "1", "--top", "2", "--n", "8", "--seeds", "0-1", "--out", how]
        rc, out, err = cli(capsys, "ablate", run, *argv, *extra)
        assert rc == 0, err
        written = Path(how, "ablation-layer1.json").read_bytes()
        report = ablate_run(
            run, 1, top=2, n=8, seeds=[0, 1], out=how,
            channels=[1, 2] if how == "channels" else None,
            region=[0, 0, 8, 8] if how == "region" else None,
        )  # fmt: skip
        assert "\n".join(ablation_lines(report)) + "\n" == out
        assert Path(how, "ablation-layer1.json").read_bytes() == written
        assert out.startswith("top channels by region contrast") == (how == "region")
