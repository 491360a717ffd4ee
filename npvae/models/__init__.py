"""The models: AE, VAE and VQVAE."""

from .ae import AE
from .base import LossTerms, memory_bytes
from .vae import VAE
from .vqvae import VQVAE

__all__ = ["AE", "VAE", "VQVAE", "LossTerms", "memory_bytes"]
