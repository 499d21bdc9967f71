"""The commands that look inside a trained G: walks, arithmetic, codes, mixing, truncation
and ablation (the DCGAN paper's section 6 and its successors)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UserError
from .common import Parser


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
    i.add_argument(
        "--seeds", default="3,17",
        help="waypoint seeds, e.g. 3,17,42 (default 3,17), or latents that `gankit project` "
        "wrote: FILE.npz (all of them) or FILE.npz:0,3",
    )  # fmt: skip
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
        "classifier's probability), bold or thin (ink), or class=K:bold / class=K:thin; "
        "or projected latents of real images: FILE.npz:0,1,2 (from `gankit project`).",
    )  # fmt: skip
    for name in ("a", "b", "c"):
        a.add_argument(f"--{name}", metavar="SEEDS|ATTR|NPZ", help=f"group {name}")
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
    _add_project(sub, common)


def _add_project(sub: Any, common: Parser) -> None:
    p = sub.add_parser(
        "project", parents=[common],
        help="find the latents whose G images are closest to real images (GAN inversion)",
        description="Optimise a latent per image (z, or w for StyleGAN; z and the class for a "
        "conditional model) from several starts, on a pixel loss plus the distance between "
        "D's feature maps. Writes the latents (PREFIX.npz, which interpolate and arithmetic "
        "take in place of seeds), a figure of target / progress / projection (PREFIX.png) "
        "and the distances (PREFIX.json); default PREFIX is RUN/project. Images are converted "
        "to the model's channels and size; digits models expect white ink on black.",
    )  # fmt: skip
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps (default 500)")
    p.add_argument("--starts", type=int, default=4, help="random starts per image (default 4)")
    p.add_argument("--space", default="z", choices=("z", "w"), help="z (default) or w (StyleGAN)")
    p.add_argument("--class", dest="label", type=int, help="fix the class (conditional models)")
    p.add_argument(
        "--feature-weight", type=float, default=0.1,
        help="weight of the D-feature distance against pixels (default 0.1; 0 = pixels only)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts")


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


def _say(result: Any) -> int:
    print("\n".join(result.lines()))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from ..analysis import interpolate_run

    return _say(
        interpolate_run(
            args.run, seeds=args.seeds, steps=args.steps, spherical=args.slerp,
            classes=args.label, features=args.features, evaluator=args.evaluator,
            out=args.out, ema=not args.no_ema, device=args.device,
        )
    )  # fmt: skip


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from ..analysis import arithmetic_run

    return _say(
        arithmetic_run(
            args.run, a=args.a, b=args.b, c=args.c, per_group=args.per_group, pool=args.pool,
            draws=args.draws, noise=args.noise, label=args.label, evaluator=args.evaluator,
            out=args.out, ema=not args.no_ema, device=args.device,
        )
    )  # fmt: skip


def cmd_codes(args: argparse.Namespace) -> int:
    from ..analysis import codes_run

    return _say(
        codes_run(
            args.run, seeds=args.seeds, steps=args.steps, span=args.span, purity=args.purity,
            evaluator=args.evaluator, out=args.out, ema=not args.no_ema, device=args.device,
        )
    )  # fmt: skip


def cmd_mixing(args: argparse.Namespace) -> int:
    from ..analysis import mixing_run

    return _say(
        mixing_run(
            args.run, rows=args.rows, cols=args.cols, crossover=args.crossover,
            truncation=args.trunc, out=args.out, ema=not args.no_ema, device=args.device,
        )
    )  # fmt: skip


def cmd_truncation(args: argparse.Namespace) -> int:
    from ..analysis import truncation_run

    return _say(
        truncation_run(
            args.run, values=args.values, seeds=args.seeds, label=args.label, out=args.out,
            ema=not args.no_ema, device=args.device,
        )
    )  # fmt: skip


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..analysis import ablation as ab
    from ..sampling import parse_seeds

    if args.list:
        print(ab.format_layers(ab.run_layers(args.run, ema=not args.no_ema)))
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
    print("\n".join(ab.ablation_lines(report)))
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from ..analysis.projection import ProjectOptions, project_run

    opts = ProjectOptions(
        steps=args.steps, starts=args.starts, feature_weight=args.feature_weight, seed=args.seed
    )
    return _say(
        project_run(
            args.run, args.images, space=args.space, label=args.label, options=opts,
            out=args.out, ema=not args.no_ema, device=args.device,
            progress=lambda done, total: print(
                f"gankit: projected {done}/{total}", file=sys.stderr, flush=True
            ),
        )
    )  # fmt: skip


COMMANDS = {
    "project": cmd_project,
    "interpolate": cmd_interpolate,
    "arithmetic": cmd_arithmetic,
    "codes": cmd_codes,
    "mixing": cmd_mixing,
    "truncation": cmd_truncation,
    "ablate": cmd_ablate,
}
