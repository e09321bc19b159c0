"""The one version string of edgepose."""

__version__ = "0.1.0"
