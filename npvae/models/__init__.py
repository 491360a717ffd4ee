"""The models: AE, VAE, CVAE and VQVAE."""

from .ae import AE
from .base import LossTerms, memory_bytes
from .cvae import CVAE
from .vae import VAE
from .vqvae import VQVAE

__all__ = ["AE", "CVAE", "VAE", "VQVAE", "LossTerms", "memory_bytes"]
