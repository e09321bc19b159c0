"""Exceptions raised by edgepose.

Every error derives from :class:`EdgePoseError`. Messages name the bad value, the valid
choices and the fix; edgepose suggests, it never auto-corrects.
"""

from __future__ import annotations


class EdgePoseError(Exception):
    """Base class of every edgepose error."""


class MissingDependencyError(EdgePoseError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class ModelLoadError(EdgePoseError):
    """A model file is missing, unreadable, truncated or not a model for this backend."""


class InputSpecError(EdgePoseError, ValueError):
    """A tensor fed to a backend has the wrong name, shape or dtype."""


class UnknownNameError(EdgePoseError, KeyError):
    """A name (model card, backend, device profile, dataset) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(EdgePoseError, ValueError):
    """A configuration file or option has an invalid field or value."""


class SourceError(EdgePoseError):
    """A video/camera source cannot be opened or read."""


class MissingFileError(EdgePoseError, FileNotFoundError):
    """A file or folder the user named (teacher, training data, assets) does not exist."""


class CompressionError(EdgePoseError, RuntimeError):
    """A compression step produced a model that fails its own check (export parity, the ONNX
    checker, the pruning exactness guard): the settings or the model are not supported."""


def unknown_name(kind: str, name: str, choices, fix: str = "") -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists the valid choices."""
    choices = sorted(choices)
    msg = f"unknown {kind} {name!r}; valid choices: {', '.join(choices) if choices else '(none)'}"
    if fix:
        msg += f". {fix}"
    return UnknownNameError(msg)
