"""npvae: autoencoders and variational autoencoders in NumPy, every gradient written by hand."""

__version__ = "0.1.0"

import sys

from . import _kernels as kernels
from . import check, datasets, interop, threads
from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .checkpoint import Checkpoint, CheckpointError, load, load_checkpoint, save
from .gradcheck import GradcheckReport, gradcheck, gradcheck_module
from .losses import bce_with_logits, gaussian_kl, gaussian_nll, squared_error
from .models import AE, CVAE, VAE, VQVAE, LossTerms
from .nn import Dense, Module, Parameter, Sequential
from .optim import SGD, Adam, clip_grad_norm
from .priors import CategoricalPrior, MADEPrior
from .reparam import Reparameterization
from .history import History
from .train import TrainingError, evaluate, fit


# ``import npvae.kernels`` finds the kernels module under its public name
sys.modules[__name__ + ".kernels"] = kernels


def __getattr__(name: str):
    # plots imports matplotlib (~1 s): loaded on first use, so that `import npvae` stays light
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AE", "Adam", "CVAE", "Checkpoint", "CheckpointError", "Dense", "GradcheckReport", "History",
    "Identity", "LeakyReLU", "LossTerms", "Module", "Parameter", "ReLU", "Reparameterization",
    "SGD", "Sequential", "Sigmoid", "Tanh", "TrainingError", "VAE", "bce_with_logits",
    "check", "clip_grad_norm", "datasets", "evaluate", "fit", "gaussian_kl", "gaussian_nll", "gradcheck",
    "gradcheck_module", "interop", "kernels", "load", "load_checkpoint", "plots", "save", "squared_error",
    "threads",
    "__version__",
    "VQVAE", "MADEPrior", "CategoricalPrior",
]
