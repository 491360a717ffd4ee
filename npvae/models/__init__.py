"""The models: AE, VAE and CVAE."""

from .ae import AE
from .cvae import CVAE
from .vae import VAE, LossTerms

__all__ = ["AE", "CVAE", "VAE", "LossTerms"]
