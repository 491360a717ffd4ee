"""The models: AE and VAE."""

from .ae import AE
from .base import LossTerms, memory_bytes
from .vae import VAE

__all__ = ["AE", "VAE", "LossTerms", "memory_bytes"]
