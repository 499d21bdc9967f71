"""gankit: train, sample, evaluate and look inside generative adversarial networks.

The public API:
    create_model, list_models    the model registry
    load_dataset, list_datasets  data (embedded digits, MNIST family, CIFAR-10, folders, npz)
    create_objective             GAN losses as objects
    train                        the trainer behind `gankit train`
    load, generate, render       sampling from a run folder or checkpoint (seeds or latents)

Each name is imported when first used (PEP 562), so `import gankit.sampling` or
`import gankit.metrics` loads no training code, and `import gankit` alone loads next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .errors import UserError
from .lazy import lazy_names

# name -> the module that defines it
_LAZY = {
    "create_model": ".models",
    "list_models": ".models",
    "create_objective": ".objectives",
    "list_objectives": ".objectives",
    "list_datasets": ".data",
    "load_dataset": ".data",
    "generate": ".sampling",
    "load": ".sampling",
    "parse_seeds": ".sampling",
    "render": ".sampling",
    "train": ".api",
}

if TYPE_CHECKING:  # what editors and type checkers follow
    from .api import train
    from .data import list_datasets, load_dataset
    from .models import create_model, list_models
    from .objectives import create_objective, list_objectives
    from .sampling import generate, load, parse_seeds, render

__all__ = [
    "UserError",
    "create_model",
    "create_objective",
    "generate",
    "list_datasets",
    "list_models",
    "list_objectives",
    "load",
    "load_dataset",
    "parse_seeds",
    "render",
    "train",
    "__version__",
]


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
