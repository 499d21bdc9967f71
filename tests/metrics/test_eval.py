"""`gankit eval` and the metric protocols: names, records, caching, the floor, training hooks."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from gankit.checkpoint import read_checkpoint
from gankit.cli import main
from gankit.errors import UserError
from gankit.metrics import evaluate_real, evaluate_run, parse_metric
from gankit.metrics.features import FeatureExtractor, Features
from gankit.metrics.reference import real_features

TINY = ["--resolution", "16", "--no-progress", "--set", "ngf=8", "--set", "ndf=8"]


def run_cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cdcgan trained for 1 kimg on digits, evaluated every 0.5 kimg, keeping the best."""
    run = tmp_path_factory.mktemp("eval") / "run"
    rc, out, err = run_cli(
        "train", "cdcgan", "--data", "digits", *TINY, "--kimg", "1", "--batch-size", "64",
        "--run-dir", run, "--eval-every-kimg", "0.5", "--eval-metrics",
        "fd200_pixel,kid200_pixel", "--keep-best", "fd200_pixel",
    )  # fmt: skip
    assert rc == 0, err
    return run


def test_metric_names_parse_and_bad_names_are_user_errors() -> None:
    r = parse_metric("fd5k_mnistcnn")
    assert (r.kind, r.n, r.features) == ("fd", 5000, "mnistcnn")
    assert parse_metric("fid10k_inception").n == 10000
    assert parse_metric("modes2500_ring8").features == "ring8"
    assert parse_metric("prdc1.5k_pixel").n == 1500
    for bad in ("fd_mnist", "fd5k", "zz5k_pixel", "fd1_pixel", "fd0.5_pixel", "acc5k_ring8"):
        with pytest.raises(UserError):
            parse_metric(bad)


def test_training_evaluates_and_keeps_the_best_checkpoint(cond_run: Path) -> None:
    recs = [json.loads(x) for x in (cond_run / "eval.jsonl").read_text().splitlines()]
    fds = [r for r in recs if r["metric"] == "fd200_pixel"]
    assert [r["nimg"] for r in fds] == [512, 1024]  # every 0.5 kimg, then at the end
    best = read_checkpoint(cond_run / "checkpoints" / "best.safetensors")
    want = min(fds, key=lambda r: r["value"])
    assert best.meta["best"]["value"] == pytest.approx(want["value"])
    assert best.nimg == want["nimg"]
    # The record of the best travels in every later checkpoint (so a resume keeps it).
    last = read_checkpoint(sorted((cond_run / "checkpoints").glob("ckpt-*"))[-1])
    assert last.meta["best"] == best.meta["best"]


def test_eval_records_carry_the_whole_protocol_and_append(cond_run: Path) -> None:
    before = (cond_run / "eval.jsonl").read_text().splitlines()
    recs = evaluate_run(cond_run, "fd100_pixel,prdc100_pixel,memo50_pixel", seed=3)
    after = (cond_run / "eval.jsonl").read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 3
    for rec in recs:
        p = rec["protocol"]
        for key in ("n_gen", "n_real", "reference", "extractor", "extractor_checksum",
                    "resize_filter", "seed", "generator", "data_resize"):  # fmt: skip
            assert key in p, key
        assert p["generator"] == "G_ema" and p["seed"] == 3
        assert rec["nimg"] == 1024 and rec["model"] == "cdcgan"
    fd, pr, memo = recs
    assert fd["protocol"]["n_gen"] == fd["protocol"]["n_real"] == 100
    assert set(pr["values"]) == {"precision", "recall", "density", "coverage"}
    assert memo["protocol"]["n_real"] == 4000  # nearest neighbours among all training images
    # G instead of G_ema is a different generator, and the record says so.
    g = evaluate_run(cond_run, "fd100_pixel", ema=False, append=False, seed=3)[0]
    assert g["protocol"]["generator"] == "G" and g["value"] != fd["value"]


def test_same_seed_same_number_and_seed_changes_it(cond_run: Path) -> None:
    a = evaluate_run(cond_run, "kid100_pixel", seed=1, append=False)[0]["value"]
    b = evaluate_run(cond_run, "kid100_pixel", seed=1, append=False)[0]["value"]
    c = evaluate_run(cond_run, "kid100_pixel", seed=2, append=False)[0]["value"]
    assert a == b and a != c


def test_real_held_out_data_scores_near_the_floor(cond_run: Path) -> None:
    floor = evaluate_real("digits", "fd297_pixel,prdc297_pixel", resolution=16, channels=1)
    model = evaluate_run(cond_run, "fd297_pixel,prdc297_pixel", append=False)
    assert floor[0]["protocol"]["generator"] == "real test split"
    # A barely trained generator is far from the data; real held-out digits are close to it.
    assert floor[0]["value"] < 0.1 * model[0]["value"]
    assert floor[1]["values"]["precision"] > 0.9 and floor[1]["values"]["recall"] > 0.9


def test_evaluate_run_scores_the_floor_in_the_same_call(cond_run: Path) -> None:
    before = (cond_run / "eval.jsonl").read_text().splitlines()
    recs = evaluate_run(cond_run, "fd100_pixel,kid100_pixel", floor=True, seed=2)
    after = (cond_run / "eval.jsonl").read_text().splitlines()
    assert len(after) == len(before) + 2  # the run's records only: the floor is never appended
    own, floor = recs[:2], recs[2:]
    assert [r["protocol"]["generator"] for r in own] == ["G_ema"] * 2
    assert [r["model"] for r in floor] == ["real"] * 2
    alone = evaluate_real("digits", "fd100_pixel,kid100_pixel", resolution=16, channels=1, seed=2)
    assert [r["value"] for r in floor] == [r["value"] for r in alone]


class CountingExtractor(FeatureExtractor):
    name = "counting"
    resolution = 16
    channels = 1
    resize_filter = "none"

    def __init__(self) -> None:
        self.calls = 0

    @property
    def checksum(self) -> str:
        return "c0ffee"

    def __call__(self, images: torch.Tensor) -> Features:
        self.calls += 1
        return Features(features=images.flatten(1)[:, :8].float())


def test_real_statistics_are_cached_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    ext = CountingExtractor()
    imgs = torch.randint(0, 256, (20, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    imgs = imgs.to(torch.uint8)
    key = {"data": "x", "split": "train", "n": 20}
    a = real_features(imgs, ext, key)
    b = real_features(imgs, ext, key)
    assert ext.calls == 1  # the second call read the cache
    torch.testing.assert_close(a.features, b.features)
    files = list((tmp_path / "stats").iterdir())
    assert len(files) == 1 and not any(p.name.endswith(".tmp") for p in files)
    changed = imgs.clone()
    changed[0, 0, 0, 0] ^= 1
    real_features(changed, ext, key)  # one pixel differs: a new entry, not a stale hit
    assert ext.calls == 2
    files[0].write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    real_features(imgs, ext, key)
    assert ext.calls == 3


def test_eval_cli_prints_a_table(cond_run: Path) -> None:
    rc, out, err = run_cli("eval", cond_run, "--metrics", "fd100_pixel", "--no-append", "--floor")
    assert rc == 0, err
    assert "fd100_pixel" in out and "G_ema" in out and "real test split" in out
    rc, out, _ = run_cli("eval", "--list")
    assert rc == 0 and "prdc" in out and "memo" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--metrics", "nonsense"], "bad metric name"),
        (["--metrics", "zz5k_pixel"], "unknown metric"),
        (["--metrics", "fd100_foo"], "unknown feature space"),
        (["--metrics", "fid100_pixel"], "inception"),
        (["--metrics", "is100_pixel"], "logits"),
        ([], "--metrics"),
    ],
)
def test_eval_cli_bad_input_is_one_line(cond_run: Path, args: list[str], fragment: str) -> None:
    rc, out, err = run_cli("eval", cond_run, "--no-append", *args)
    assert rc == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and fragment.lower() in err.lower(), err


def test_missing_domain_classifier_says_how_to_train_one(
    cond_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    rc, _, err = run_cli("eval", cond_run, "--metrics", "fd100_mnistcnn", "--no-append")
    assert rc == 2 and "gankit evaluator train --data digits" in err


def test_unconditional_model_refuses_conditional_metrics(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, _, err = run_cli(
        "train", "dcgan", "--data", "digits", *TINY, "--kimg", "0.064", "--batch-size", "32",
        "--run-dir", run,
    )  # fmt: skip
    assert rc == 0, err
    rc, _, err = run_cli("eval", run, "--metrics", "acc100_pixel", "--no-append")
    assert rc == 2 and "class-conditional" in err


def test_a_run_on_a_subset_is_compared_with_the_images_it_saw(tmp_path: Path) -> None:
    """--max-images 200: FID's training reference and memorisation's "nearest training
    image" are those 200 digits, not the whole split (copies of them would be diluted)."""
    run = tmp_path / "run"
    rc, _, err = run_cli(
        "train", "dcgan", "--data", "digits", *TINY, "--kimg", "0.064", "--batch-size", "32",
        "--max-images", "200", "--run-dir", run,
    )  # fmt: skip
    assert rc == 0, err
    fd, memo = evaluate_run(run, ["fd100_pixel", "memo100_pixel"], append=False)
    assert fd["protocol"]["reference_size"] == 200
    assert fd["protocol"]["reference"] == "digits train split, first 200 images"
    assert memo["values"]["n_train"] == 200
    assert memo["values"]["n_heldout"] == 1000  # the test split is never cut
    test_fd = evaluate_run(run, ["fd100_pixel"], split="test", append=False)[0]
    assert test_fd["protocol"]["reference_size"] == 1000


def test_bad_eval_options_in_training_fail_before_training(tmp_path: Path) -> None:
    base = ["train", "dcgan", "--data", "digits", *TINY, "--kimg", "0.064", "--run-dir"]
    rc, _, err = run_cli(*base, tmp_path / "a", "--eval-every-kimg", "1")
    assert rc == 2 and "eval_metrics" in err
    rc, _, err = run_cli(
        *base, tmp_path / "b", "--eval-every-kimg", "1", "--eval-metrics", "fd100_pixel",
        "--keep-best", "kid100_pixel",
    )  # fmt: skip
    assert rc == 2 and "keep_best" in err
    rc, _, err = run_cli(
        *base, tmp_path / "c", "--eval-every-kimg", "1", "--eval-metrics", "fd100_nope"
    )
    assert rc == 2 and "feature space" in err
    assert not (tmp_path / "c" / "checkpoints").exists()


# ----------------------------------------------------------------------------- Inception


@pytest.fixture(scope="module")
def substitute_inception(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Offline stand-in: the reference architecture with random weights, saved as a .pth."""
    from gankit.metrics.inception import build_network

    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.manual_seed(0)
    torch.save(build_network(None).state_dict(), path)
    return path


def test_inception_path_runs_with_substitute_weights(
    cond_run: Path, substitute_inception: Path
) -> None:
    from gankit.metrics.inception import InceptionExtractor

    ext = InceptionExtractor(substitute_inception)
    assert ext.name == "inception-custom" and not ext.standard  # never passed off as FID
    f = ext(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    assert f.features.shape == (2, 2048) and f.logits is not None and f.logits.shape == (2, 1008)
    rec = evaluate_run(
        cond_run,
        "fid4_inception-custom,is4_inception-custom",
        inception_weights=str(substitute_inception),
        append=False,
        use_cache=False,
    )
    assert rec[0]["protocol"]["extractor_checksum"] == ext.checksum
    assert rec[0]["protocol"]["resize_filter"].startswith("bilinear, TF1")
    with pytest.raises(UserError, match="not the standard Inception"):
        evaluate_run(
            cond_run, "fid4_inception", inception_weights=str(substitute_inception), append=False
        )


def test_missing_inception_weights_name_the_file_and_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gankit.metrics.inception import WEIGHTS_NAMES, find_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError) as err:
        find_weights(download=False)
    msg = str(err.value)
    assert WEIGHTS_NAMES[0] in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--inception-weights" in msg
    # The cache is used when the file is there.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / WEIGHTS_NAMES[1]).write_bytes(b"x")
    assert find_weights(download=False).name == WEIGHTS_NAMES[1]


class _Boom:
    def __reduce__(self):  # pickle would call this on load: it must never run
        return (Path.touch, (Path(_Boom.target),))

    target = ""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notes the foreign pickle
def test_inception_weights_with_a_pickle_payload_are_refused(tmp_path: Path) -> None:
    from gankit.metrics.inception import InceptionExtractor

    _Boom.target = str(tmp_path / "pwned")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": _Boom()}))
    with pytest.raises(UserError, match="refusing"):
        InceptionExtractor(evil)
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- classifier metrics


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gankit.metrics.classifier import train_classifier

    out = tmp_path_factory.mktemp("clf") / "digits.safetensors"
    # 95.6% on the 1,000 test digits (seed 0); 92.9% of them at the runs' 16x16 (measured).
    train_classifier(
        "digits", epochs=3, batch_size=64, max_images=2000, seed=0, out=out, progress=False
    )
    return out


def test_class_accuracy_and_per_class_fd_in_classifier_features(
    cond_run: Path, digits_classifier: Path
) -> None:
    recs = evaluate_run(
        cond_run,
        "acc200_mnistcnn,pcfd200_mnistcnn,is200_mnistcnn,fd200_mnistcnn",
        evaluator=str(digits_classifier),
        append=False,
    )
    acc, pcfd, is_, fd = recs
    assert acc["protocol"]["extractor"] == "mnistcnn" and acc["protocol"]["n_real"] == 0
    per_class = [acc["values"][f"acc_class{c}"] for c in range(10)]
    assert acc["value"] == pytest.approx(sum(per_class) / 10)  # 20 samples of every class
    fds = [pcfd["values"][f"fd_class{c}"] for c in range(10)]
    assert pcfd["value"] == pytest.approx(sum(fds) / 10)
    assert 1.0 <= is_["value"] <= 10.0
    floor = evaluate_real(
        "digits",
        "acc1k_mnistcnn,fd1k_mnistcnn",
        resolution=16,
        channels=1,
        evaluator=str(digits_classifier),
    )
    # Real digits are drawn as their labels say; a 1-kimg generator is not there yet.
    assert floor[0]["value"] > 0.9 > acc["value"]
    assert floor[1]["value"] < fd["value"]


def test_evaluate_real_names_the_count_it_really_used(digits_classifier: Path) -> None:
    recs = evaluate_real(
        "digits", "fd5k_pixel,fd1k_pixel", resolution=16, channels=1, use_cache=False
    )
    assert [r["metric"] for r in recs] == ["fd1k_pixel"]  # both capped to the 1,000 held out
    assert recs[0]["protocol"]["n_gen"] == 1000


def test_stacked_mode_count_through_eval(tmp_path: Path, digits_classifier: Path) -> None:
    run = tmp_path / "stacked"
    rc, _, err = run_cli(
        "train", "dcgan", "--data", "stacked-digits", *TINY, "--kimg", "0.064",
        "--batch-size", "32", "--run-dir", run,
    )  # fmt: skip
    assert rc == 0, err
    rec = evaluate_run(run, "modes300_mnistcnn", evaluator=str(digits_classifier), append=False)[0]
    assert 1 <= rec["values"]["modes"] <= 300 and rec["values"]["num_modes"] == 1000
    assert rec["values"]["kl"] >= 0.0
    # The same count as classifying the same 300 samples by hand, channel by channel.
    from gankit.metrics.classifier import load_classifier
    from gankit.metrics.scoring import generate_images
    from gankit.sampling import load

    loaded = load(run)
    images, _ = generate_images(loaded.G, 300)
    clf = load_classifier(digits_classifier)
    digits = [clf(images[:, c : c + 1]).logits.argmax(1) for c in range(3)]
    triples = {tuple(t) for t in torch.stack(digits, 1).tolist()}
    assert rec["values"]["modes"] == len(triples)


def test_mixture_mode_count_through_eval(tmp_path: Path) -> None:
    run = tmp_path / "ring"
    rc, _, err = run_cli(
        "train", "gan", "--data", "ring8", "--no-progress", "--set", "hidden=16",
        "--kimg", "0.256", "--batch-size", "64", "--run-dir", run,
        "--eval-every-kimg", "0.128", "--eval-metrics", "modes500_ring8",
    )  # fmt: skip
    assert rc == 0, err
    during = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["nimg"] for r in during] == [128, 256]
    rec = evaluate_run(run, "modes500_ring8", append=False)[0]
    # The evaluation at the end of training and `gankit eval` afterwards draw the same samples.
    assert rec["values"] == during[-1]["values"]
    v = rec["values"]
    assert rec["value"] == v["modes_covered"] and 0 <= v["modes_covered"] <= 8
    assert v["num_modes"] == 8 and 0.0 <= v["high_quality_fraction"] <= 1.0
    assert rec["protocol"]["n_gen"] == 500 and rec["protocol"]["threshold_std"] == 3.0
    with pytest.raises(UserError, match="grid25"):
        evaluate_run(run, "modes500_grid25", append=False)
    rc, _, err = run_cli(
        "train", "gan", "--data", "ring8", "--no-progress", "--kimg", "0.128",
        "--run-dir", tmp_path / "bad", "--eval-every-kimg", "0.1",
        "--eval-metrics", "modes500_grid25",
    )  # fmt: skip
    assert rc == 2 and "grid25" in err


def test_in_training_evaluation_can_compare_with_the_test_split(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, _, err = run_cli(
        "train", "gan", "--no-progress", "--set", "hidden=16", "--resolution", "8",
        "--kimg", "0.128", "--batch-size", "64", "--run-dir", run, "--precision", "fp32",
        "--eval-every-kimg", "0.128", "--eval-metrics", "fd100_pixel", "--eval-ref", "test",
    )  # fmt: skip
    assert rc == 0, err
    during = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])
    assert during["protocol"]["reference"] == "digits test split"
    after = evaluate_run(run, "fd100_pixel", split="test", append=False)[0]
    assert after["value"] == pytest.approx(during["value"], rel=1e-6)
    train_ref = evaluate_run(run, "fd100_pixel", split="train", append=False)[0]
    assert train_ref["value"] != pytest.approx(during["value"], rel=1e-6)


def test_memorisation_command_writes_figures(cond_run: Path, tmp_path: Path) -> None:
    rc, out, err = run_cli("memorisation", cond_run, "--n", "50", "--out", tmp_path / "m")
    assert rc == 0, err
    assert "ratio" in out and (tmp_path / "m" / "memorisation-pixel.png").is_file()
    rc, _, err = run_cli("memorisation", cond_run, "--features", "nope", "--out", tmp_path / "x")
    assert rc == 2 and "feature space" in err
