"""faceprior: blind face restoration with a generative facial prior (GFP-GAN)."""

from faceprior.models import create_model
from faceprior.models.loading import load_model, resolve_model
from faceprior.version import __version__

__all__ = ["__version__", "create_model", "load_model", "resolve_model"]
