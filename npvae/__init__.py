"""npvae: autoencoders and variational autoencoders in NumPy, every gradient written by hand."""

__version__ = "0.1.0"

from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .gradcheck import GradcheckReport, gradcheck, gradcheck_module
from .losses import bce_with_logits, gaussian_kl, gaussian_nll, squared_error
from .models import AE, VAE, LossTerms
from .nn import Dense, Module, Parameter, Sequential
from .optim import SGD, Adam, clip_grad_norm
from .reparam import Reparameterization

__all__ = [
    "AE", "Adam", "Dense", "GradcheckReport", "Identity", "LeakyReLU", "LossTerms", "Module",
    "Parameter", "ReLU", "Reparameterization", "SGD", "Sequential", "Sigmoid", "Tanh", "VAE",
    "bce_with_logits", "clip_grad_norm", "gaussian_kl", "gaussian_nll", "gradcheck",
    "gradcheck_module", "squared_error", "__version__",
]
