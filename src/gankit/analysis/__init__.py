"""Analyses of trained runs: what a GAN learned, and whether it copies its training data.

The functions below run one analysis on a saved run (load it and its data, compute, write the
figures and the JSON report) and return what they wrote, with the lines the matching
`gankit` command prints (`lines()`). The pieces they are made of (walks, probes, filter
views, ablation hooks, ...) live in the submodules, imported by name
(e.g. `gankit.analysis.latent_walks`).

Each name is imported when first used (PEP 562), so importing the package pulls in neither
matplotlib nor scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

# name -> the submodule that defines it
_LAZY = {
    "ablate_run": ".ablation",
    "ablation_lines": ".ablation",
    "run_layers": ".ablation",
    "arithmetic_run": ".arithmetic",
    "ArithmeticRun": ".arithmetic",
    "filter_report": ".filters",
    "format_report": ".filters",
    "FilterReport": ".filters",
    "codes_run": ".infogan",
    "CodesRun": ".infogan",
    "interpolate_run": ".latent_walks",
    "InterpolateRun": ".latent_walks",
    "memorisation_report": ".memorisation",
    "memorisation_run": ".memorisation",
    "MemorisationRun": ".memorisation",
    "figure_prefix": ".paths",
    "probe_path": ".paths",
    "project_run": ".projection",
    "ProjectRun": ".projection",
    "features_run": ".probe",
    "FeaturesRun": ".probe",
    "probe_run": ".probe",
    "ProbeRun": ".probe",
    "mixing_run": ".style_mixing",
    "MixingRun": ".style_mixing",
    "truncation_run": ".truncation",
    "TruncationRun": ".truncation",
}

if TYPE_CHECKING:  # what editors and type checkers follow
    from .ablation import ablate_run, ablation_lines, run_layers
    from .arithmetic import ArithmeticRun, arithmetic_run
    from .filters import FilterReport, filter_report, format_report
    from .infogan import CodesRun, codes_run
    from .latent_walks import InterpolateRun, interpolate_run
    from .memorisation import MemorisationRun, memorisation_report, memorisation_run
    from .paths import figure_prefix, probe_path
    from .probe import FeaturesRun, ProbeRun, features_run, probe_run
    from .projection import ProjectRun, project_run
    from .style_mixing import MixingRun, mixing_run
    from .truncation import TruncationRun, truncation_run

__all__ = [
    "ArithmeticRun",
    "CodesRun",
    "FeaturesRun",
    "FilterReport",
    "InterpolateRun",
    "MemorisationRun",
    "MixingRun",
    "ProbeRun",
    "ProjectRun",
    "TruncationRun",
    "ablate_run",
    "ablation_lines",
    "arithmetic_run",
    "codes_run",
    "features_run",
    "figure_prefix",
    "filter_report",
    "format_report",
    "interpolate_run",
    "memorisation_report",
    "memorisation_run",
    "mixing_run",
    "probe_path",
    "probe_run",
    "project_run",
    "run_layers",
    "truncation_run",
]


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
