"""The models: AE, VAE and VQVAE."""

from .ae import AE
from .vae import VAE, LossTerms
from .vqvae import VQVAE

__all__ = ["AE", "VAE", "VQVAE", "LossTerms"]
