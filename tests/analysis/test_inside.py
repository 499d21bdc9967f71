"""Looking inside a trained G: class walks, attribute-picked arithmetic, truncation sweeps and
the commands (interpolate, arithmetic, codes, mixing, truncation, features) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.analysis.arithmetic import noise_around, pick_seeds, run_arithmetic
from gankit.analysis.attributes import ink, make_attribute, parse_attribute
from gankit.analysis.dfeatures import feature_size
from gankit.analysis.latent_walks import leg_rows, make_walk
from gankit.analysis.truncation import truncation_sweep
from gankit.errors import UserError
from gankit.latent import prior_of
from gankit.models import create_model
from gankit.models.layers import LabelEmbedding
from gankit.sampling import load, render
from tests.cli.test_cli import assert_user_error, cli, train_run
from tests.conftest import FIXTURES_V1, tiny_overrides


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny finished runs: dcgan, cdcgan (10 classes), infogan and stylegan. Never modified."""
    base = tmp_path_factory.mktemp("inside")
    short = ("--kimg", "0.064", "--batch-size", "32")
    out = {}
    for name in ("dcgan", "cdcgan", "infogan", "stylegan"):
        tiny = tiny_overrides(name)
        sets = [
            x
            for k, v in tiny.items()
            if k not in ("resolution", "channels", "num_classes", "nz")
            for x in ("--set", f"{k}={v}")
        ]
        out[name] = base / name
        train_run(out[name], name, *short, *sets)
    return out


# ----------------------------------------------------------------------------- the API


def test_label_embedding_takes_integer_labels_and_class_weights():
    torch.manual_seed(0)
    emb = LabelEmbedding(5, 3)
    y = torch.tensor([0, 3, 4])
    torch.testing.assert_close(emb(torch.eye(5)[y]), emb.weight[y])
    mix = torch.tensor([[0.25, 0.0, 0.0, 0.75, 0.0]])
    torch.testing.assert_close(emb(mix)[0], 0.25 * emb.weight[0] + 0.75 * emb.weight[3])
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        emb(torch.ones(2, 4))
    assert set(emb.state_dict()) == {"weight"}  # checkpoints stay nn.Embedding's


def test_class_walk_ends_at_the_class_samples_and_moves_the_embedding():
    torch.manual_seed(0)
    G = create_model("cdcgan", **tiny_overrides("cdcgan")).G.eval()
    walk = make_walk(G, [5], steps=4, classes=[0, 2, 1], num_classes=3)
    assert walk.z.shape == (7, 8) and walk.y.shape == (7, 3)
    torch.testing.assert_close(walk.z, walk.z[:1].expand(7, -1))  # one seed: z stays put
    torch.testing.assert_close(walk.y[[0, 3, 6]], torch.eye(3)[[0, 2, 1]])
    torch.testing.assert_close(walk.y[1], torch.tensor([2 / 3, 0.0, 1 / 3]))
    with torch.no_grad():
        ends = G(walk.z[[0, 3, 6]], torch.tensor([0, 2, 1]))
        frames = G(walk.z, walk.y)
    torch.testing.assert_close(frames[[0, 3, 6]], ends)
    assert (frames[1] - frames[0]).abs().max() > 1e-4  # the middle frames do move
    both = make_walk(G, [1, 2], steps=3, classes=[0, 1], num_classes=3)
    torch.testing.assert_close(both.z[[0, 2]], prior_of(G).from_seeds([1, 2]))
    with pytest.raises(ValueError, match="one per waypoint"):
        make_walk(G, [1, 2, 3], steps=3, classes=[0, 1], num_classes=3)
    with pytest.raises(ValueError, match="two waypoints"):
        make_walk(G, [1], steps=3, classes=[2], num_classes=3)
    with pytest.raises(ValueError, match="0..2"):
        make_walk(G, [1], steps=3, classes=[0, 3], num_classes=3)


def test_leg_rows_repeats_each_legs_start():
    frames = torch.arange(7.0)[:, None, None, None]
    rows = leg_rows(frames, steps=4)
    assert rows.flatten().tolist() == [0, 1, 2, 3, 3, 4, 5, 6]


def test_pick_seeds_takes_the_highest_scores():
    torch.manual_seed(0)
    G = create_model("dcgan", **tiny_overrides("dcgan")).G.eval()
    prior = prior_of(G)

    def draw(seeds: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return G(prior.from_seeds(seeds))

    pool = list(range(40))
    picked, scores = pick_seeds(draw, ink, pool, k=3, batch_size=7)
    brute = ink(draw(pool))
    assert picked == torch.topk(brute, 3).indices.tolist()
    torch.testing.assert_close(torch.tensor(scores), torch.topk(brute, 3).values)
    thin, _ = pick_seeds(draw, make_attribute(parse_attribute("thin")), pool, k=3)
    assert thin == torch.topk(-brute, 3).indices.tolist()
    with pytest.raises(UserError, match="out of 40"):
        pick_seeds(draw, ink, pool, k=41)


def test_attributes_parse_and_class_attributes_use_the_classifier():
    def classify(u8: torch.Tensor) -> torch.Tensor:  # class 1 = dark, class 0 = light
        m = (u8.float().mean((1, 2, 3)) - 127.5) / 25
        return torch.stack([m, -m], 1)

    assert make_attribute(parse_attribute("bold")) is ink  # no classifier needed
    spec = parse_attribute("class=1")
    assert spec.cls == 1 and spec.needs_classifier
    prob = make_attribute(spec, classify, 2)
    dark, light = -torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    assert prob(dark) > 0.9 > 0.1 > prob(light)
    # class=0:thin: only confident 0s (light images here) rank by thinness, ahead of the rest
    imgs = torch.cat([dark, light * 0.8, light])
    scores = make_attribute(parse_attribute("class=0:thin"), classify, 2)(imgs)
    assert scores.argmax() == 1 and scores[0] < scores[2]
    for bad in ("class=x", "class=-1", "shiny", "bold:thin", "class=1:class=2"):
        with pytest.raises(UserError, match="attribute"):
            parse_attribute(bad)
    with pytest.raises(UserError, match="classifier"):
        make_attribute(parse_attribute("class=0"))
    with pytest.raises(UserError, match="0..1"):
        make_attribute(parse_attribute("class=2"), classify, 2)


def test_noise_draws_and_b_equal_c_gives_the_mean_of_a():
    z = torch.randn(16)
    draws = noise_around(z, 8, scale=0.25, seed=1)
    torch.testing.assert_close(draws[0], z)
    assert (draws[1:] - z).abs().max() <= 0.25 and (draws[1:] - z).abs().max() > 0.1
    torch.manual_seed(0)
    G = create_model("dcgan", **tiny_overrides("dcgan")).G.eval()

    def render_z(zs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return G(zs)

    res = run_arithmetic(G, render_z, {"a": [1, 2, 3], "b": [4, 5], "c": [4, 5]}, draws=3)
    torch.testing.assert_close(res.result[0], res.means["a"][0])
    assert res.members["a"].shape[0] == 3 and res.result.shape[0] == 3


def test_truncation_sweep_narrows_variety(runs):
    run = load(runs["dcgan"])
    sweep = truncation_sweep(run, [None, 0.05], list(range(8)))
    assert sweep.images.shape[:2] == (2, 8) and sweep.space == "z"
    assert sweep.variety[1] < 0.5 * sweep.variety[0]
    styled = truncation_sweep(load(runs["stylegan"]), [1.0, 0.01], list(range(8)))
    assert styled.space == "w" and styled.variety[1] < 0.5 * styled.variety[0]
    with pytest.raises(UserError, match="two seeds"):
        truncation_sweep(run, [None], [3])


def test_render_checks_class_weights(runs):
    run = load(runs["cdcgan"])
    z = prior_of(run.G).from_seeds([0, 1])
    torch.testing.assert_close(render(run, z, torch.eye(10)[[3, 4]]), render(run, z, [3, 4]))
    with pytest.raises(ValueError, match=r"\[N, 10\]"):
        render(run, z, torch.ones(2, 3))


# ----------------------------------------------------------------------------- the commands


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_interpolate_writes_grid_gif_steps_and_report(runs, capsys):
    rc, out, err = cli(capsys, "interpolate", runs["dcgan"], "--seeds", "3,17,42", "--steps", "5")
    assert rc == 0, err
    assert "max/mean" in out
    prefix = runs["dcgan"] / "interpolate"
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert report["frames"] == 9 and report["seeds"] == [3, 17, 42]
    sm = report["smoothness"]["pixels"]
    assert len(sm["steps"]) == 8 and sm["max"] >= sm["mean"] > 0
    w, h = _png(prefix.with_suffix(".png"))
    assert w > h  # 2 legs of 5 frames: wider than tall
    _png(Path(str(prefix) + "-steps.png"))
    with Image.open(prefix.with_suffix(".gif")) as gif:
        assert gif.n_frames == 2 * 9 - 2  # there and back, ends not repeated


def test_interpolate_walks_the_class_of_a_conditional_model(runs, capsys):
    out = Path("walk")
    rc, text, err = cli(
        capsys, "interpolate", runs["cdcgan"], "--seeds", "4", "--class", "1,7", "--out", out
    )
    assert rc == 0, err
    report = json.loads(Path("walk.json").read_text())
    assert report["classes"] == [1, 7] and report["frames"] == 10
    assert "class 1 -> 7" in text
    rc, text, _ = cli(capsys, "interpolate", runs["cdcgan"], "--out", "w2")
    assert rc == 0 and "class 0" in text  # a conditional model without --class: class 0, said


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (("interpolate", "{dcgan}", "--seeds", "3"), ("two waypoints",)),
        (("interpolate", "{dcgan}", "--class", "1,2"), ("not class-conditional",)),
        (("interpolate", "{dcgan}", "--steps", "1"), ("--steps",)),
        (("arithmetic", "{dcgan}", "--a", "1,2", "--b", "3"), ("--c",)),
        (("arithmetic", "{dcgan}", "--a", "1", "--b", "2", "--c", "shiny"), ("attribute",)),
        (("codes", "{dcgan}"), ("no latent codes",)),
        (("mixing", "{dcgan}"), ("no style inputs",)),
        (("truncation", "{dcgan}", "--values", "a,b"), ("--values",)),
        (("truncation", "{dcgan}", "--values", "0"), ("truncation must be > 0",)),
        (("features", "{dcgan}", "--out", "f.txt"), (".npz",)),
    ],
)
def test_bad_requests_are_one_clear_line(runs, capsys, argv, fragments):
    argv = [a.format(dcgan=runs["dcgan"]) for a in argv]
    assert_user_error(cli(capsys, *argv), *fragments)


def test_arithmetic_with_seeds_and_with_an_attribute(runs, capsys):
    rc, out, err = cli(
        capsys, "arithmetic", runs["dcgan"], "--a", "1,2,3", "--b", "4,5,6", "--c", "4,5,6",
        "--draws", "4", "--out", "ar",
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads(Path("ar.json").read_text())
    assert report["groups"] == {"a": [1, 2, 3], "b": [4, 5, 6], "c": [4, 5, 6]}
    # b == c: the result is G at a's mean latent, so their ink agrees
    assert report["ink"]["result"] == pytest.approx(report["ink"]["mean z of a"], abs=1e-6)
    _png(Path("ar.png"))
    rc, _, err = cli(
        capsys, "arithmetic", runs["dcgan"], "--a", "bold", "--b", "thin", "--c", "7",
        "--pool", "0-29", "--per-group", "2", "--out", "ar2",
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads(Path("ar2.json").read_text())
    assert len(report["groups"]["a"]) == 2 and report["groups"]["c"] == [7]
    assert min(report["scores"]["a"]) > max(-s for s in report["scores"]["b"])  # bold > thin


def test_codes_mixing_and_truncation_write_figures(runs, capsys):
    rc, _, err = cli(capsys, "codes", runs["infogan"], "--seeds", "0-2", "--steps", "4")
    assert rc == 0, err
    _png(runs["infogan"] / "codes.png")
    rc, _, err = cli(capsys, "mixing", runs["stylegan"], "--rows", "0-1", "--cols", "2-4")
    assert rc == 0, err
    w, h = _png(runs["stylegan"] / "mixing.png")
    assert w > h  # 4 columns, 3 rows
    rc, out, err = cli(
        capsys, "truncation", runs["stylegan"], "--values", "1,0.5", "--seeds", "0-3"
    )
    assert rc == 0, err
    report = json.loads((runs["stylegan"] / "truncation.json").read_text())
    assert report["space"] == "w" and report["values"] == [1.0, 0.5]
    assert_user_error(cli(capsys, "truncation", runs["stylegan"], "--values", "2"), "psi in (0, 1]")


def test_features_match_the_formula_and_the_random_d_differs(runs, capsys):
    rc, out, err = cli(capsys, "features", runs["dcgan"], "--n", "12", "--out", "f.npz")
    assert rc == 0, err
    with np.load("f.npz") as f:
        x, y = f["x"], f["y"]
    D = load(runs["dcgan"]).model.D
    assert x.shape == (12, feature_size(D, 1, 16)) and y.shape == (12,)
    rc, _, err = cli(capsys, "features", runs["dcgan"], "--n", "12", "--random-d", "--out", "r.npz")
    assert rc == 0, err
    with np.load("r.npz") as r:
        assert r["x"].shape == x.shape and not np.allclose(r["x"], x)


# ----------------------------------------------------------------------------- the commands' API

CLASSIFIER = FIXTURES_V1 / "classifier-digits.safetensors"


def same_as_cli(capsys, argv, call, reports=()):
    """Run `gankit ARGV`, then `call()`, the API function behind it, with the same options:
    the result's lines are what the command printed, and it rewrites the same reports."""
    rc, out, err = cli(capsys, *argv)
    assert rc == 0, err
    written = {Path(p): Path(p).read_bytes() for p in reports}
    result = call()
    assert "\n".join(result.lines()) + "\n" == out
    for path, data in written.items():
        assert path.read_bytes() == data, path
    return result


def test_interpolate_run_is_the_command(runs, capsys):
    from gankit.analysis import interpolate_run

    res = same_as_cli(
        capsys,
        ("interpolate", runs["cdcgan"], "--seeds", "4,5", "--steps", "3", "--slerp",
         "--features", "mnistcnn", "--evaluator", CLASSIFIER, "--out", "walk"),
        lambda: interpolate_run(runs["cdcgan"], seeds="4,5", steps=3, spherical=True,
                                features="mnistcnn", evaluator=str(CLASSIFIER), out="walk"),
        ["walk.json"],
    )  # fmt: skip
    assert res.notes == ["class-conditional model: walking at class 0 (choose with --class)"]
    assert res.frames == 3 and set(res.measured) == {"pixels", "mnistcnn"}
    assert res.report_path == Path("walk.json") and res.paths["gif"] == Path("walk.gif")
    assert res.report["classes"] == [0, 0] and res.walk.spherical


def test_arithmetic_run_is_the_command(runs, capsys):
    from gankit.analysis import arithmetic_run

    res = same_as_cli(
        capsys,
        ("arithmetic", runs["dcgan"], "--a", "class=1", "--b", "thin", "--c", "4,5",
         "--pool", "0-9", "--per-group", "2", "--draws", "3", "--evaluator", CLASSIFIER,
         "--out", "ar"),
        lambda: arithmetic_run(runs["dcgan"], a="class=1", b="thin", c="4,5", pool="0-9",
                               per_group=2, draws=3, evaluator=str(CLASSIFIER), out="ar"),
        ["ar.json"],
    )  # fmt: skip
    assert res.figure == Path("ar.png") and res.report_path == Path("ar.json")
    assert sum(res.report["result_classes"]) == 3 and res.result.result.shape[0] == 3
    assert res.titles["c"] == "seeds 4,5" and len(res.report["groups"]["a"]) == 2
    with pytest.raises(UserError, match="--b"):
        arithmetic_run(runs["dcgan"], a="1", b=None, c="2")


def test_codes_mixing_and_truncation_runs_are_the_commands(runs, capsys):
    from gankit.analysis import codes_run, mixing_run, truncation_run

    res = same_as_cli(
        capsys,
        ("codes", runs["infogan"], "--seeds", "0-1", "--steps", "3", "--purity", "4",
         "--evaluator", CLASSIFIER, "--out", "cd"),
        lambda: codes_run(runs["infogan"], seeds="0-1", steps=3, purity=4,
                          evaluator=str(CLASSIFIER), out="cd"),
        ["cd-purity.json"],
    )  # fmt: skip
    assert res.figure == Path("cd.png") and res.purity["n_per_code"] == 4
    assert codes_run(runs["infogan"], seeds=[0], steps=2, out="c2").purity is None
    with pytest.raises(UserError, match="no latent codes"):  # the spec says so, not the network
        codes_run(runs["dcgan"])
    res = same_as_cli(
        capsys,
        ("mixing", runs["stylegan"], "--rows", "0-1", "--cols", "2-3", "--out", "mx"),
        lambda: mixing_run(runs["stylegan"], rows="0-1", cols="2-3", out="mx"),
    )
    assert res.figure == Path("mx.png")
    with pytest.raises(UserError, match="no style inputs"):
        mixing_run(runs["dcgan"])
    res = same_as_cli(
        capsys,
        ("truncation", runs["stylegan"], "--values", "none,0.5", "--seeds", "0-2", "--out", "tr"),
        lambda: truncation_run(runs["stylegan"], values="none,0.5", seeds="0-2", out="tr"),
        ["tr.json"],
    )
    assert res.sweep.values == [None, 0.5] and res.report["space"] == "w"
    assert (
        truncation_run(runs["dcgan"], values=[1.0, 2.0], seeds=[0, 1], out="t2").sweep.space == "z"
    )


def test_features_run_is_the_command(runs, capsys):
    from gankit.analysis import features_run

    rc, out, err = cli(
        capsys, "features", runs["dcgan"], "--n", "6", "--random-d", "--out", "c.npz"
    )
    assert rc == 0, err
    res = features_run(runs["dcgan"], n=6, random_d=True, out="a.npz")
    assert "\n".join(res.lines()) + "\n" == out.replace("c.npz", "a.npz")
    with np.load("a.npz") as a, np.load("c.npz") as c:
        np.testing.assert_array_equal(a["x"], c["x"])
        np.testing.assert_array_equal(a["y"], c["y"])
        dims = a["x"].shape[1]
    assert res.path == Path("a.npz") and res.n == 6 and res.split == "test"
    assert res.dims == dims == feature_size(load(runs["dcgan"]).model.D, 1, 16)
    assert not features_run(runs["dcgan"], n=2, split="train", out="t.npz").random_d


def test_default_outputs_are_in_the_run_folder(tmp_path):
    from gankit.analysis import figure_prefix, probe_path

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "ckpt-000064.safetensors"
    assert figure_prefix(run, None, "codes") == figure_prefix(ckpt, None, "codes") == run / "codes"
    assert figure_prefix(run, "x/fig.png", "codes") == Path("x/fig")
    assert figure_prefix(run, "x/fig.v2", "codes") == Path("x/fig.v2")
    assert probe_path(run, None) == run / "probe.json"
    assert probe_path(ckpt, None) == ckpt.with_suffix(".probe.json")
    assert probe_path(run, "p.json") == Path("p.json")
