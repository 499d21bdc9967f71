"""The embedded demo: DCGAN and CGAN on the embedded MNIST digits, no download needed.

Each model trains for a wall-time budget (so the demo ends on time on any laptop) and leaves a
run folder with sample grids, loss curves, a training animation and a resumable checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from .api import train
from .sampling import sample_to_file

DEMO_MODELS = ("dcgan", "cgan")  # each trains with its registered "demo" preset


def run_demo(
    outdir: str | Path = "runs/demo", seconds_per_model: float = 150.0, progress: bool = True
) -> dict[str, Path]:
    """Train each demo model into outdir/NAME and write outdir/NAME/samples.png.

    Args:
        outdir: parent folder; earlier demo runs there are replaced.
        seconds_per_model: wall-time budget of each training run.
        progress: show progress bars.
    Returns:
        model name -> run folder.
    """
    out = Path(outdir)
    runs: dict[str, Path] = {}
    for model in DEMO_MODELS:
        print(f"== {model} on the embedded digits (32x32), {seconds_per_model:.0f} s budget ==")
        result = train(
            model,
            "digits",
            run_dir=out / model,
            overwrite=True,
            preset="demo",
            max_seconds=seconds_per_model,
            progress=progress,
        )
        info = sample_to_file(result.run_dir, result.run_dir / "samples.png")
        print(
            f"   {result.nimg} images in {result.seconds:.0f} s ({result.img_per_s:.0f} img/s); "
            f"grid: {info['written'][0]}"
        )
        runs[model] = result.run_dir
    print(
        "\nLook at, in each run folder: samples.png (G_ema, seeds 0-63 / one row per digit), "
        "progress.gif (the fixed-noise grid over training), losses.png (curves), "
        "samples/ (grids at intervals) and checkpoints/ (resume with gankit train --resume)."
    )
    return runs
