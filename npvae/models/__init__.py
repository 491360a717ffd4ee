"""The models: AE, VAE and CVAE."""

from .ae import AE
from .base import LossTerms, memory_bytes
from .cvae import CVAE
from .vae import VAE

__all__ = ["AE", "CVAE", "VAE", "LossTerms", "memory_bytes"]
