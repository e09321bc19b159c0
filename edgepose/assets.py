"""Where the assets folder is: one setting, the environment variable ``EDGEPOSE_ASSETS``.

The assets folder holds the reference models (``models/``), the evaluation and training media
(``data/``) and ``ASSETS.md``, which says what each file is and under which licence. It is not part
of the repository. Everything in edgepose that needs it (temporal evaluation, compression
defaults, the benchmark scripts) finds it through :func:`assets_dir`:

1. an explicit path (``--assets DIR`` on the commands that take it), else
2. ``$EDGEPOSE_ASSETS``, else
3. in a source checkout only: ``<checkout>/../shared/assets`` (the layout of the development
   machines and CI).

A folder that does not exist raises :class:`AssetsNotFoundError`, which names the variable.
(The evaluation data alone can also be given as ``$EDGEPOSE_DATA``, the folder holding
``coco_mini/`` and ``mmpose_mini/``: see :mod:`edgepose.eval.datasets`.)
"""

from __future__ import annotations

import os
from pathlib import Path

from edgepose.errors import EdgePoseError

#: The environment variable naming the assets folder.
ASSETS_ENV = "EDGEPOSE_ASSETS"


class AssetsNotFoundError(EdgePoseError):
    """The assets folder is not set, or is not where the setting says."""


def checkout_default() -> Path | None:
    """``<checkout>/../shared/assets`` when edgepose runs from a source checkout, else None."""
    repo = Path(__file__).resolve().parent.parent
    if (repo / "setup.cfg").is_file() or (repo / ".git").exists():
        return repo.parent / "shared" / "assets"
    return None


def assets_dir(path: str | os.PathLike | None = None, *, check: bool = True) -> Path:
    """The assets folder: ``path`` if given, else ``$EDGEPOSE_ASSETS``, else the checkout default.

    Args:
        path: an explicit folder (e.g. a command's ``--assets``); None or "" = the setting.
        check: raise if the folder does not exist (False: return the path as resolved).

    Raises:
        AssetsNotFoundError: no folder is set (installed package, variable unset), or ``check``
            and the folder does not exist. The message names ``EDGEPOSE_ASSETS``.
    """
    if path:
        root, source = Path(path).expanduser(), "the assets path given"
    elif os.environ.get(ASSETS_ENV):
        root, source = Path(os.environ[ASSETS_ENV]).expanduser(), ASSETS_ENV
    else:
        root, source = checkout_default(), "the checkout default"
        if root is None:
            raise AssetsNotFoundError(f"no assets folder: set {ASSETS_ENV} to the folder holding "
                                      "models/ and data/ (or pass --assets DIR)")
    if check and not root.is_dir():
        raise AssetsNotFoundError(f"assets folder not found at {root} ({source}); set {ASSETS_ENV} "
                                  "to the folder holding models/ and data/ (or pass --assets DIR)")
    return root

