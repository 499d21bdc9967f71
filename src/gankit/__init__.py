"""gankit: train, sample, evaluate and look inside generative adversarial networks.

The public API:
    create_model, list_models    the model registry
    load_dataset, list_datasets  data (embedded digits, MNIST family, CIFAR-10, folders, npz)
    create_objective             GAN losses as objects
    train                        the trainer behind `gankit train`
    load, generate, render       sampling from a run folder or checkpoint (seeds or latents)
"""

from .data import list_datasets, load_dataset
from .errors import UserError
from .models import create_model, list_models
from .objectives import create_objective, list_objectives
from .sampling import generate, load, parse_seeds, render
from .training import train

__version__ = "0.1.0"

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
