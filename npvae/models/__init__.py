"""The models: AE and VAE."""

from .ae import AE
from .vae import VAE, LossTerms

__all__ = ["AE", "VAE", "LossTerms"]
