"""The package version (read by the CLI and the weight store's User-Agent)."""

__version__ = "0.1.0.dev0"
