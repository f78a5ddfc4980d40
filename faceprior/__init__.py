"""faceprior: blind face restoration with a generative facial prior (GFP-GAN)."""

__version__ = "0.1.0.dev0"

from faceprior.models import create_model  # noqa: E402  (after __version__, which submodules read)
from faceprior.weights.loading import load_model  # noqa: E402

__all__ = ["__version__", "create_model", "load_model"]
