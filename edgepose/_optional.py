"""Import optional dependencies with an error that says which pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from edgepose.errors import MissingDependencyError


def require(module: str, extra: str, *, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra.

    Args:
        module: dotted module name, e.g. ``"onnxruntime"``.
        extra: the edgepose extra that installs it, e.g. ``"tflite"``.
        package: the PyPI package name when it differs from the module name.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{module!r} is required for this feature but is not installed "
            f"({type(exc).__name__}: {exc}). Install it with: pip install 'edgepose[{extra}]' "
            f"(or: pip install {pkg})"
        ) from exc
