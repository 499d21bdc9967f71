"""The commands that look inside a trained G: walks, arithmetic, codes, mixing, truncation
and ablation (the DCGAN paper's section 6 and its successors)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import UserError
from .common import Parser, class_counts, domain_classifier, out_prefix, parse_classes


def add_parsers(sub: Any) -> None:
    """The commands that look inside a trained model (the DCGAN paper's section 6)."""
    common = Parser(add_help=False)
    common.add_argument("run", help="run folder or checkpoint .safetensors file")
    common.add_argument("--out", help="output path without suffix (default: in the run folder)")
    common.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    common.add_argument("--device", default="cpu")
    i = sub.add_parser(
        "interpolate", parents=[common],
        help="a latent walk between seeds (and classes): grid, animation, smoothness",
        description="Walk through the latents of --seeds (and, for a conditional model, the "
        "class embeddings of --class), write a grid (one leg per row), a looping GIF and a "
        "plot of the step sizes, and print how even the steps are: a smooth walk has max/mean "
        "near 1; a jump (a sign of memorisation) shows as a large max/mean.",
    )  # fmt: skip
    i.add_argument("--seeds", default="3,17", help="waypoint seeds, e.g. 3,17,42 (default 3,17)")
    i.add_argument("--steps", type=int, default=10, help="frames per leg, ends included")
    i.add_argument("--slerp", action="store_true", help="spherical instead of linear in z")
    i.add_argument("--class", dest="label", help="class (or one per waypoint, e.g. 1,7)")
    i.add_argument(
        "--features", default="pixel",
        help="also measure step sizes in a feature space: mnistcnn or inception",
    )  # fmt: skip
    i.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    a = sub.add_parser(
        "arithmetic", parents=[common],
        help="vector arithmetic a - b + c on averaged latents",
        description="Average the z of each group, show G at mean(a) - mean(b) + mean(c) with "
        "noise draws around it, beside the group members. A group is seeds (1,2,3) or an "
        "attribute that picks the best --per-group seeds out of --pool: class=K (the domain "
        "classifier's probability), bold or thin (ink), or class=K:bold / class=K:thin.",
    )  # fmt: skip
    for name in ("a", "b", "c"):
        a.add_argument(f"--{name}", metavar="SEEDS|ATTR", help=f"group {name}")
    a.add_argument("--per-group", type=int, default=3, help="seeds per attribute group (3)")
    a.add_argument("--pool", default="0-499", help="candidate seeds for attributes (0-499)")
    a.add_argument("--draws", type=int, default=8, help="result images, the first noise-free")
    a.add_argument("--noise", type=float, default=0.25, help="uniform noise scale of the draws")
    a.add_argument("--class", dest="label", type=int, help="class for a conditional model")
    a.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    c = sub.add_parser(
        "codes", parents=[common], help="InfoGAN: sweep each latent code (rows: seeds)"
    )
    c.add_argument("--seeds", default="0-7", help="one row per seed (default 0-7)")
    c.add_argument("--steps", type=int, default=10, help="columns of a continuous sweep")
    c.add_argument("--span", type=float, default=2.0, help="continuous codes go -span..span")
    c.add_argument(
        "--purity", type=int, metavar="N", help="also measure categorical purity, N per code"
    )
    c.add_argument("--evaluator", metavar="PATH", help="domain classifier file (mnistcnn)")
    mx = sub.add_parser(
        "mixing", parents=[common],
        help="StyleGAN: style mixing grid (coarse styles from rows, fine from columns)",
    )  # fmt: skip
    mx.add_argument("--rows", default="0-4", help="seeds of the coarse styles (default 0-4)")
    mx.add_argument("--cols", default="5-10", help="seeds of the fine styles (default 5-10)")
    mx.add_argument("--crossover", type=int, help="first style input from the column seed")
    mx.add_argument("--trunc", type=float, help="psi in (0, 1]")
    t = sub.add_parser(
        "truncation", parents=[common],
        help="the same seeds at several truncation levels, with their variety",
    )  # fmt: skip
    t.add_argument(
        "--values", default="none,2,1,0.5,0.25",
        help="thresholds in z, or psi in (0, 1] for stylegan; 'none' = no truncation",
    )  # fmt: skip
    t.add_argument("--seeds", default="0-9", help="one column per seed (default 0-9)")
    t.add_argument("--class", dest="label", type=int, help="class for a conditional model")
    _add_ablate(sub)


def _add_ablate(sub: Any) -> None:
    a = sub.add_parser(
        "ablate",
        help="zero chosen G feature maps (found by a region or an attribute) against a control",
        description="Remove feature maps of one G layer, as the DCGAN paper removed its window "
        "filters: give the channels, or let them be found by a region of the image "
        "(--region) or by the domain classifier's p(class) (--attribute class=K). Writes a "
        "figure of the same seeds before and after, with the same number of random channels "
        "ablated as a control, and a JSON report (default RUN/ablation-layerN.png/.json).",
    )
    a.add_argument("run", help="run folder or checkpoint .safetensors file")
    a.add_argument("--list", action="store_true", help="list G's ablatable layers and stop")
    a.add_argument("--layer", type=int, help="layer index (see --list)")
    a.add_argument("--channels", help="ablate these channels, e.g. 3,7")
    a.add_argument("--region", help="find channels firing in x0,y0,x1,y1 (output pixels)")
    a.add_argument(
        "--attribute",
        help="find channels driving an attribute: class=K (the classifier's p(K)), bold, thin",
    )
    a.add_argument("--causal", action="store_true", help="score by each channel's own ablation")
    a.add_argument("--top", type=int, default=10, help="channels to ablate (default 10)")
    a.add_argument("--n", type=int, default=500, help="samples to score and measure (500)")
    a.add_argument("--seeds", default="0-31", help="seeds in the figure (default 0-31)")
    a.add_argument("--class", dest="label", type=int, help="class label (conditional models)")
    a.add_argument("--out", help="folder or .png (default: the run folder)")
    a.add_argument("--data", help="data whose domain classifier to use (default: the run's)")
    a.add_argument("--evaluator", metavar="PATH", help="domain classifier file")
    a.add_argument("--no-ema", action="store_true", help="use G instead of G_ema")
    a.add_argument("--device", default="cpu")


def cmd_interpolate(args: argparse.Namespace) -> int:
    from ..analysis.latent_walks import make_walk, save_walk_figures, smoothness, walk_title
    from ..data.base import to_uint8
    from ..files import atomic_write_json
    from ..sampling import load, parse_seeds, render

    run = load(args.run, device=args.device, ema=not args.no_ema)
    seeds, classes = parse_seeds(args.seeds), parse_classes(args.label)
    if run.num_classes and classes is None:
        classes = [0]
        print("gankit: class-conditional model: walking at class 0 (choose with --class)")
    if classes is not None and not run.num_classes:
        raise UserError(f"{run.model.name} is not class-conditional; drop --class")
    if args.steps < 2 or args.steps > 200:
        raise UserError(f"--steps must be between 2 and 200 (got {args.steps})")
    try:
        walk = make_walk(run.G, seeds, args.steps, args.slerp, classes, run.num_classes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    frames = render(run, walk.z, walk.y)
    measured = {"pixels": smoothness(frames)}
    if args.features != "pixel":
        from ..metrics.protocol import ExtractorOptions

        data = run.checkpoint.meta["run_config"]["train"]["data"]
        opts = ExtractorOptions(data=data, evaluator=args.evaluator, device=args.device)
        measured[args.features] = smoothness(opts.get(args.features)(to_uint8(frames)).features)
    prefix = out_prefix(args.run, args.out, "interpolate")
    paths = save_walk_figures(frames, walk, prefix, measured)
    report = {
        "run": str(args.run), "checkpoint": str(run.checkpoint.path), "nimg": run.checkpoint.nimg,
        "walk": walk_title(walk), "seeds": walk.seeds, "classes": walk.classes,
        "steps": walk.steps, "slerp": walk.spherical, "frames": int(frames.shape[0]),
        "smoothness": {k: v.to_json() for k, v in measured.items()},
        "figures": {k: str(v) for k, v in paths.items()},
    }  # fmt: skip
    atomic_write_json(prefix.with_name(prefix.name + ".json"), report)
    print(f"{walk_title(walk)}: {frames.shape[0]} frames")
    for name, sm in measured.items():
        print(
            f"  step size ({name}, RMS): mean {sm.mean:.4g}, max {sm.max:.4g}, "
            f"max/mean {sm.max_over_mean:.2f}" + ("  <- a jump" if sm.max_over_mean > 3 else "")
        )
    print(f"  grid: {paths['grid']}  animation: {paths['gif']}  steps: {paths['steps']}")
    return 0


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from ..analysis.arithmetic import pick_seeds, run_arithmetic, save_arithmetic_figure
    from ..analysis.attributes import ink, make_attribute, parse_attribute
    from ..data.base import to_uint8
    from ..files import atomic_write_json
    from ..sampling import check_class, generate, load, parse_seeds, render

    run = load(args.run, device=args.device, ema=not args.no_ema)
    check_class(run, args.label)
    label = args.label if args.label is not None else (0 if run.num_classes else None)

    def labels_for(n: int) -> list[int] | None:
        return None if label is None else [label] * n

    specs = {}
    for name in ("a", "b", "c"):
        given = getattr(args, name)
        if given is None:
            raise UserError(f"give --{name} (seeds such as 1,2,3 or an attribute such as class=7)")
        specs[name] = None if given[:1].isdigit() else parse_attribute(given)
    classifier = None
    if any(s is not None and s.needs_classifier for s in specs.values()):
        classifier = domain_classifier(run, args.evaluator)
    pool = parse_seeds(args.pool)
    groups, scores, titles = {}, {}, {}
    for name, spec in specs.items():
        given = getattr(args, name)
        if spec is None:
            groups[name] = parse_seeds(given)
            titles[name] = f"seeds {given}"
            continue
        attr = make_attribute(
            spec, classifier and classifier.classify, classifier and classifier.num_classes
        )
        groups[name], scores[name] = pick_seeds(
            lambda s: generate(run, s, labels_for(len(s))), attr, pool, args.per_group
        )
        titles[name] = f"{given} (seeds {','.join(map(str, groups[name]))})"
    res = run_arithmetic(
        run.G, lambda z: render(run, z, labels_for(z.shape[0])), groups, args.draws, args.noise
    )
    prefix = out_prefix(args.run, args.out, "arithmetic")
    fig = save_arithmetic_figure(res, prefix.with_name(prefix.name + ".png"), titles)
    report = {
        "run": str(args.run), "nimg": run.checkpoint.nimg, "groups": groups, "scores": scores,
        "titles": titles, "draws": args.draws, "noise": args.noise, "figure": str(fig),
        "ink": {**{f"mean z of {k}": float(ink(v)[0]) for k, v in res.means.items()},
                "result": float(ink(res.result[:1])[0]),
                "result draws (mean)": float(ink(res.result).mean())},
    }  # fmt: skip
    if classifier is not None:
        logits = classifier.classify(to_uint8(res.result))
        counts = logits.argmax(1).bincount(minlength=logits.shape[1]).tolist()
        report["result_classes"] = counts
        print(f"classifier on the {args.draws} result images: {class_counts(counts)}")
    atomic_write_json(prefix.with_name(prefix.name + ".json"), report)
    for name in ("a", "b", "c"):
        ink_mean = report["ink"][f"mean z of {name}"]
        print(f"  {name}: {titles[name]}; ink of G(mean z) {ink_mean:.3f}")
    print(f"  a - b + c: ink {report['ink']['result']:.3f}")
    print(f"figure: {fig}")
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    from ..analysis.infogan import categorical_purity, save_code_sweep_figure
    from ..files import atomic_write_json
    from ..sampling import load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    if not run.model.spec.codes:
        raise UserError(f"{run.model.name} has no latent codes to sweep (an infogan model has)")
    prefix = out_prefix(args.run, args.out, "codes")
    fig = save_code_sweep_figure(
        run.G, prefix.with_name(prefix.name + ".png"), parse_seeds(args.seeds), args.steps,
        args.span, title=f"{run.model.name}, {run.checkpoint.nimg:,} images",
    )  # fmt: skip
    print(f"code sweeps: {fig}")
    if args.purity:
        from ..metrics.protocol import ExtractorOptions

        data = run.checkpoint.meta["run_config"]["train"]["data"]
        classify = ExtractorOptions(data=data, evaluator=args.evaluator).get("mnistcnn").classify
        purity = categorical_purity(run.G, classify, n_per_code=args.purity)
        atomic_write_json(prefix.with_name(prefix.name + "-purity.json"), purity)
        print(json.dumps(purity, indent=2))
    return 0


def cmd_mixing(args: argparse.Namespace) -> int:
    from ..analysis.style_mixing import save_style_mixing_figure
    from ..sampling import load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    if not run.model.spec.style_mixing:
        raise UserError(f"{run.model.name} has no style inputs to mix (a stylegan model has)")
    prefix = out_prefix(args.run, args.out, "mixing")
    try:
        fig = save_style_mixing_figure(
            run.G, parse_seeds(args.rows), parse_seeds(args.cols),
            prefix.with_name(prefix.name + ".png"), args.crossover, args.trunc,
        )  # fmt: skip
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"style mixing (rows: coarse styles, columns: fine styles): {fig}")
    return 0


def cmd_truncation(args: argparse.Namespace) -> int:
    from ..analysis.truncation import save_truncation_figure, truncation_sweep
    from ..files import atomic_write_json
    from ..sampling import check_class, load, parse_seeds

    run = load(args.run, device=args.device, ema=not args.no_ema)
    check_class(run, args.label)
    try:
        values = [None if v in ("none", "") else float(v) for v in args.values.split(",")]
    except ValueError:
        raise UserError(f"bad --values {args.values!r}; use e.g. 0.5,1,2,none") from None
    sweep = truncation_sweep(run, values, parse_seeds(args.seeds), args.label)
    prefix = out_prefix(args.run, args.out, "truncation")
    what = "psi in w" if sweep.space == "w" else "threshold in z"
    fig = save_truncation_figure(
        sweep, prefix.with_name(prefix.name + ".png"), f"{run.model.name}: truncation ({what})"
    )
    atomic_write_json(
        prefix.with_name(prefix.name + ".json"),
        {"run": str(args.run), "nimg": run.checkpoint.nimg, "space": sweep.space,
         "values": sweep.values, "variety": sweep.variety, "figure": str(fig)},
    )  # fmt: skip
    for v, var in zip(sweep.values, sweep.variety, strict=True):
        print(f"  {'none' if v is None else v:>6}: variety (mean pixel std) {var:.4f}")
    print(f"figure: {fig}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..analysis import ablation as ab
    from ..sampling import load, parse_seeds

    if args.list:
        print(ab.format_layers(ab.generator_layers(load(args.run, ema=not args.no_ema).G)))
        return 0
    picked = [f for f in ("channels", "region", "attribute") if getattr(args, f) is not None]
    if args.layer is None or not picked:
        raise UserError("give --layer N and --channels, --region or --attribute (or --list)")
    if args.region is not None and args.attribute is not None:
        raise UserError("choose channels by --region or by --attribute, not both")
    report = ab.ablate_run(
        args.run,
        args.layer,
        channels=None if args.channels is None else ab.parse_int_list(args.channels, "channels"),
        region=None if args.region is None else ab.parse_int_list(args.region, "region"),
        attribute=args.attribute,
        label=args.label,
        top=args.top,
        n=args.n,
        seeds=parse_seeds(args.seeds),
        causal=args.causal,
        out=args.out,
        data=args.data,
        evaluator=args.evaluator,
        ema=not args.no_ema,
        device=args.device,
    )
    if report["finder"]:
        f = report["finder"]
        pairs = zip(f["channels"], f["scores"], strict=True)
        print(f"top channels by {f['method']}: " + ", ".join(f"{c} ({s:.3g})" for c, s in pairs))
    print("\n".join(report["summary"]))
    print(f"figure: {report['figure']}\nreport: {report['report']}")
    return 0


COMMANDS = {
    "interpolate": cmd_interpolate,
    "arithmetic": cmd_arithmetic,
    "codes": cmd_codes,
    "mixing": cmd_mixing,
    "truncation": cmd_truncation,
    "ablate": cmd_ablate,
}
