"""faceprior: blind face restoration with a generative facial prior (GFP-GAN)."""

__version__ = "0.1.0.dev0"
