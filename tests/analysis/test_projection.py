"""Projecting images into G's latent space (`gankit project`), and the walks and arithmetic
that take the projected latents in place of seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.analysis.latent_files import (
    is_latent_file,
    latent_size,
    read_latents,
    render_latents,
)
from gankit.analysis.projection import ProjectOptions, pixel_error, project, project_run
from gankit.errors import UserError
from gankit.latent import prior_of
from gankit.models import create_model
from gankit.sampling import load, render
from tests.cli.test_cli import assert_user_error, cli, train_run
from tests.conftest import tiny_overrides

FAST = ProjectOptions(steps=40, starts=2, snapshots=3)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny finished runs of dcgan, cdcgan (3 classes) and stylegan. Never modified."""
    base = tmp_path_factory.mktemp("project")
    out = {}
    for name in ("dcgan", "cdcgan", "stylegan"):
        sets = [
            x
            for k, v in tiny_overrides(name).items()
            if k not in ("resolution", "channels", "num_classes", "nz")
            for x in ("--set", f"{k}={v}")
        ]
        out[name] = base / name
        train_run(out[name], name, "--kimg", "0.064", "--batch-size", "32", *sets)
    return out


def _tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name, **tiny_overrides(name))
    return model.G.eval(), model.D.eval()


# ----------------------------------------------------------------------------- the search


@pytest.mark.parametrize("space", ["z", "w"])
def test_projection_moves_towards_the_target_and_reports_its_own_image(space):
    G, D = _tiny("stylegan" if space == "w" else "dcgan")
    with torch.no_grad():
        targets = G(prior_of(G).from_seeds([11, 12, 13]))
    p = project(G, D, targets, space=space, options=FAST)
    start = pixel_error(p.progress[:, 0], targets)
    assert (p.pixel_error < start).all(), (start, p.pixel_error)
    torch.testing.assert_close(p.progress[:, -1], p.images)  # the last snapshot is the result
    torch.testing.assert_close(p.pixel_error, pixel_error(p.images, targets))
    with torch.no_grad():  # the latents reproduce the images (w with its own noise maps)
        again = (
            G(p.latents)
            if space == "z"
            else G.synthesis(p.latents.unsqueeze(1).repeat(1, G.num_ws, 1), noises=p.noises)
        )
    torch.testing.assert_close(again, p.images)
    assert p.progress_steps == [0, 20, 40]
    if space == "w":  # each optimised noise map stays zero-mean with unit variance
        for nmap in p.noises:
            torch.testing.assert_close(nmap.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
            torch.testing.assert_close(
                nmap.square().mean((1, 2, 3)), torch.ones(3), atol=1e-4, rtol=0
            )


def test_projection_leaves_the_networks_as_they_were():
    G, D = _tiny("dcgan")
    G.train()
    before = {k: v.clone() for k, v in {**G.state_dict(), **D.state_dict()}.items()}
    project(G, D, torch.zeros(2, 1, 16, 16), options=FAST)
    assert G.training and not D.training
    assert all(p.requires_grad for p in G.parameters())
    after = {**G.state_dict(), **D.state_dict()}
    for k, v in before.items():
        torch.testing.assert_close(after[k], v)


def test_conditional_projection_finds_the_class_of_a_distinct_target():
    """Two classes whose images differ in sign: the search over classes must pick each
    target's own class (a fixed class would leave one of them far off)."""

    class SignG(torch.nn.Module):
        z_dim = 4

        def forward(self, z, y):
            sign = torch.where(y.long() == 0, -1.0, 1.0)[:, None, None, None]
            return sign * torch.sigmoid(z[:, :1, None, None].expand(-1, 1, 8, 8))

    G = SignG()
    targets = torch.stack([torch.full((1, 8, 8), -0.7), torch.full((1, 8, 8), 0.3)])
    p = project(
        G, None, targets, num_classes=2, options=ProjectOptions(steps=200, starts=2, lr=0.2)
    )
    assert p.labels.tolist() == [0, 1]
    assert (p.pixel_error < 0.02).all(), p.pixel_error
    fixed = project(G, None, targets, num_classes=2, labels=torch.tensor([1]), options=FAST)
    assert fixed.labels.tolist() == [1, 1]
    assert fixed.pixel_error[0] > 0.3  # -0.7 cannot be reached from the positive class


def test_bad_options_and_spaces_are_refused():
    G, D = _tiny("dcgan")
    x = torch.zeros(1, 1, 16, 16)
    for bad in (ProjectOptions(steps=0), ProjectOptions(starts=0), ProjectOptions(lr=-1)):
        with pytest.raises(UserError):
            project(G, D, x, options=bad)
    with pytest.raises(UserError, match="z or w"):
        project(G, D, x, space="q", options=FAST)


# ----------------------------------------------------------------------------- files and runs


def _digit_files(n: int, side: int = 16) -> list[Path]:
    """White-on-black blobs as PNG files (a size the model must convert)."""
    paths = []
    for i in range(n):
        a = np.zeros((side + 4, side + 4), np.uint8)
        a[4 + i : 12 + i, 6:12] = 255
        paths.append(Path(f"digit{i}.png"))
        Image.fromarray(a).save(paths[-1])
    return paths


def test_project_command_writes_latents_a_figure_and_a_report(runs, capsys):
    files = _digit_files(3)
    rc, out, err = cli(capsys, "project", runs["dcgan"], *files, "--steps", "20", "--out", "p")
    assert rc == 0, err
    assert "projected 3/3" in err
    lines = out.splitlines()
    assert lines[0].startswith("digit0.png: pixel error ")
    assert "median pixel error" in lines[3]
    report = json.loads(Path("p.json").read_text())
    assert report["sources"] == [str(f) for f in files] and report["space"] == "z"
    assert Path("p.png").stat().st_size > 0
    got = read_latents("p.npz", "dcgan", latent_size(load(runs["dcgan"])))
    assert got.names == ["p.npz:0", "p.npz:1", "p.npz:2"] and got.labels is None
    # the stored latents render to images at the reported distances
    run = load(runs["dcgan"])
    from gankit.analysis.projection import load_images

    images = render(run, got.latents)
    torch.testing.assert_close(
        pixel_error(images, load_images(files, 1, 16)),
        torch.tensor(report["pixel_error"]),
        atol=1e-5,
        rtol=1e-4,
    )


def test_project_run_api_matches_the_command(runs, capsys):
    files = _digit_files(2)
    rc, out, _ = cli(capsys, "project", runs["dcgan"], *files, "--steps", "10", "--out", "a")
    assert rc == 0
    res = project_run(runs["dcgan"], files, options=ProjectOptions(steps=10), out="b")
    assert "\n".join(res.lines()).replace("b.", "a.") + "\n" == out
    with np.load("a.npz") as a, np.load("b.npz") as b:
        np.testing.assert_array_equal(a["z"], b["z"])


def test_projected_latents_drive_walks_and_arithmetic(runs, capsys):
    files = _digit_files(3)
    res = project_run(runs["dcgan"], files, options=ProjectOptions(steps=10), out="p")
    rc, out, err = cli(
        capsys, "interpolate", runs["dcgan"], "--seeds", "p.npz:0,2", "--steps", "4",
        "--out", "walk",
    )  # fmt: skip
    assert rc == 0, err
    assert "p.npz:0 -> p.npz:2" in out
    walk = json.loads(Path("walk.json").read_text())
    assert walk["latents"] == ["p.npz:0", "p.npz:2"] and walk["frames"] == 4
    # the walk's ends are the projections themselves
    run = load(runs["dcgan"])
    z = res.projection.latents
    ends = render(run, z[[0, 2]])
    torch.testing.assert_close(ends, res.projection.images[[0, 2]], atol=1e-5, rtol=1e-4)
    rc, out, err = cli(
        capsys, "arithmetic", runs["dcgan"], "--a", "p.npz:0", "--b", "p.npz:1",
        "--c", "p.npz:1,2", "--draws", "2", "--out", "ar",
    )  # fmt: skip
    assert rc == 0, err
    assert "projected p.npz:0" in out
    report = json.loads(Path("ar.json").read_text())
    assert report["groups"]["c"] == ["p.npz:1", "p.npz:2"]
    from gankit.analysis import arithmetic_run

    ar = arithmetic_run(runs["dcgan"], a="p.npz:0", b="p.npz:1", c="p.npz:1,2", draws=2, out="x")
    want = z[0] - z[1] + (z[1] + z[2]) / 2
    torch.testing.assert_close(ar.result.z, want)
    torch.testing.assert_close(ar.result.result[0], render(run, want[None])[0])
    torch.testing.assert_close(ar.result.members["c"], res.projection.images[[1, 2]],
                               atol=1e-5, rtol=1e-4)  # fmt: skip


def test_conditional_and_w_projections_on_runs(runs):
    files = _digit_files(2)
    res = project_run(runs["cdcgan"], files, options=FAST, out="c")
    assert res.projection.labels is not None and len(res.projection.labels) == 2
    got = read_latents("c.npz", "cdcgan", latent_size(load(runs["cdcgan"])))
    assert got.labels == res.projection.labels.tolist()
    fixed = project_run(runs["cdcgan"], files, label=2, options=FAST, out="c2")
    assert fixed.projection.labels.tolist() == [2, 2]
    w = project_run(runs["stylegan"], files, space="w", options=FAST, out="w")
    got = read_latents("w.npz", "stylegan", latent_size(load(runs["stylegan"])))
    assert got.space == "w" and len(got.names) == 2
    run = load(runs["stylegan"])
    frames = render_latents(run, got.latents, None, "w")  # w through synthesis
    assert frames.shape == (2, 1, 16, 16)
    del w


def test_projection_files_are_checked(runs, capsys):
    files = _digit_files(1)
    project_run(runs["dcgan"], files, options=FAST, out="p")
    assert is_latent_file("p.npz:0") and not is_latent_file("3,17")
    assert_user_error(
        cli(capsys, "interpolate", runs["cdcgan"], "--seeds", "p.npz"), "dcgan latents"
    )
    assert_user_error(cli(capsys, "interpolate", runs["dcgan"], "--seeds", "p.npz:5"), "holds 1")
    assert_user_error(cli(capsys, "interpolate", runs["dcgan"], "--seeds", "nope.npz"), "no such")
    Path("junk.npz").write_bytes(b"not a zip")
    assert_user_error(cli(capsys, "arithmetic", runs["dcgan"], "--a", "junk.npz", "--b", "1",
                          "--c", "2"), "projection file")  # fmt: skip
    assert_user_error(cli(capsys, "project", runs["dcgan"], *files, "--space", "w"), "no w space")
    assert_user_error(cli(capsys, "project", runs["dcgan"], "missing.png"), "no such image")
    Path("bad.png").write_text("text")
    assert_user_error(cli(capsys, "project", runs["dcgan"], "bad.png"), "not an image")
    project_run(runs["stylegan"], files, space="w", options=FAST, out="w")
    assert_user_error(
        cli(capsys, "arithmetic", runs["stylegan"], "--a", "w.npz", "--b", "1", "--c", "2"),
        "only with other w latents",
    )


def test_explicit_noise_maps_equal_the_const_mode():
    G, _ = _tiny("stylegan")
    ws = G.mapping(torch.randn(2, G.z_dim)).unsqueeze(1).repeat(1, G.num_ws, 1)
    consts = [c.noise_const for b in G.blocks for c in b.convs]
    assert [tuple(c.shape[1:]) for c in consts] == G.noise_shapes
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws, "const"), G.synthesis(ws, noises=consts))
        with pytest.raises(ValueError, match="maps"):
            G.synthesis(ws, noises=consts[:1])
