"""Model cards, found by name (``list_models()``) or by a model file's metadata / checksum.

A card is never guessed from tensor shapes: a file edgepose does not recognise needs
``card=NAME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgepose.errors import ModelLoadError, unknown_name
from edgepose.models._crop import Roi
from edgepose.models.base import Estimate, PoseModel
from edgepose._hash import sha256_file

#: Environment variable: extra folders (os.pathsep-separated) searched for model files.
MODEL_DIR_ENV = "EDGEPOSE_MODEL_DIR"


def default_cache_dir() -> Path:
    """Where ``edgepose fetch`` stores models: $XDG_CACHE_HOME/edgepose/models."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgepose" / "models"


@dataclass(frozen=True)
class CardSpec:
    """A registered model card.

    Attributes:
        name: the name users pick it by.
        files: model file names this card needs (first = the main model).
        sha256: known checksums of the main file (lets a bare path be recognised).
        factory: (list of opened backends, name) -> PoseModel.
        description: one line for ``edgepose models``.
    """

    name: str
    files: tuple[str, ...]
    factory: Callable[..., PoseModel]
    description: str
    sha256: tuple[str, ...] = field(default_factory=tuple)


def _movenet(backends, name):
    from edgepose.models.movenet import MoveNet

    return MoveNet(backends[0], name=name)


def _blazepose(backends, name):
    from edgepose.models.blazepose import BlazePose

    return BlazePose(backends[0], detector=backends[1], name=name)


_REGISTRY: dict[str, CardSpec] = {}

#: The card every command and ``PoseEstimator`` uses when none is named: it ships inside the package
#: (``edgepose/data/movenet_lightning_int8_qdq.onnx``), so the base install runs with no download.
DEFAULT_MODEL = "movenet-lightning-int8-onnx"


def register(spec: CardSpec) -> None:
    _REGISTRY[spec.name] = spec


for _spec in (
    CardSpec(DEFAULT_MODEL, ("movenet_lightning_int8_qdq.onnx",), _movenet,
             "MoveNet SinglePose Lightning v4, int8 ONNX (ORT QDQ) built by edgepose; ships in the package "
             "(the default)", ("2d481eb6fa8f5b09755baccd94944307bea064d74ac2c807a362b67638c39efa",)),
    CardSpec("movenet-lightning-int8", ("movenet_lightning_int8.tflite",), _movenet,
             "MoveNet SinglePose Lightning v4, official int8 TFLite, 192x192",
             ("cd7cc22fa946e5d146a7b98d496853e1923e22828d3972d579973f27f91bb105",)),
    CardSpec("movenet-lightning-fp32", ("movenet_lightning_fp32.onnx",), _movenet,
             "MoveNet SinglePose Lightning v4, fp32 ONNX, 192x192",
             ("570d3444992498662f89bc9e46a6cc3f417b2f90a62e66f3ef618b33970daeb5",)),
    CardSpec("movenet-thunder-fp32", ("movenet_thunder_fp32.onnx",), _movenet,
             "MoveNet SinglePose Thunder v4, fp32 ONNX, 256x256 (most accurate here)",
             ("adface660ef4b475e92d65ff5871b67e3b984627e8763cfcac16194471ecc3ea",)),
    CardSpec("blazepose-lite", ("pose_landmark_lite.tflite", "pose_detection.tflite"), _blazepose,
             "BlazePose GHUM lite landmarks + BlazePose person detector (TFLite)"),
    CardSpec("blazepose-full", ("pose_landmark_full.tflite", "pose_detection.tflite"), _blazepose,
             "BlazePose GHUM full landmarks + detector (TFLite); from mediapipe==0.10.14",
             ("e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",)),
    CardSpec("blazepose-heavy", ("pose_landmark_heavy.tflite", "pose_detection.tflite"), _blazepose,
             "BlazePose GHUM heavy landmarks + detector (TFLite)"),
):
    register(_spec)


def _multi(backends, name):  # multi-person cards (issue 8): edgepose.models.multipose / topdown
    from edgepose.models.topdown import build_card

    return build_card(backends, name)


for _spec in (
    CardSpec("movenet-multipose", ("movenet_multipose_lightning_fp32.onnx",), _multi,
             "MoveNet MultiPose Lightning, fp32 ONNX, 256x256 letterbox, up to 6 people"),
    CardSpec("topdown-thunder", ("movenet_thunder_fp32.onnx", "pose_detection.tflite"), _multi,
             "Multi-person top-down: BlazePose person detector (people near the camera) -> MoveNet Thunder"),
    CardSpec("topdown-lightning", ("movenet_lightning_int8.tflite", "pose_detection.tflite"), _multi,
             "Multi-person top-down: BlazePose person detector (near the camera) -> MoveNet Lightning int8"),
    CardSpec("topdown-mp-thunder", ("movenet_thunder_fp32.onnx", "movenet_multipose_lightning_fp32.onnx"),
             _multi, "Multi-person top-down: MoveNet MultiPose boxes -> MoveNet Thunder per person"),
    CardSpec("topdown-mp-lightning", ("movenet_lightning_int8.tflite", "movenet_multipose_lightning_fp32.onnx"),
             _multi, "Multi-person top-down: MoveNet MultiPose boxes -> MoveNet Lightning int8 per person"),
):
    register(_spec)


def list_models() -> list[str]:
    """Names of the registered model cards."""
    return sorted(_REGISTRY)


def get_card(name: str) -> CardSpec:
    if name not in _REGISTRY:
        raise unknown_name("model", name, _REGISTRY,
                           "Run 'edgepose models' to list them, or pass a model file path")
    return _REGISTRY[name]


def search_dirs(model_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for model files, in order."""
    dirs = []
    if model_dir:
        dirs.append(Path(model_dir))
    for d in os.environ.get(MODEL_DIR_ENV, "").split(os.pathsep):
        if d:
            dirs.append(Path(d))
    dirs.append(default_cache_dir())
    dirs.append(Path(__file__).resolve().parent.parent / "data")
    return dirs


def find_file(filename: str, model_dir=None) -> Path:
    """Locate ``filename`` in the search folders (and their immediate subfolders)."""
    dirs = search_dirs(model_dir)
    for d in dirs:
        for cand in [d / filename, *sorted(d.glob(f"*/{filename}"))]:
            if cand.is_file():
                return cand
    raise ModelLoadError(f"model file {filename!r} not found in: {', '.join(str(d) for d in dirs)}. "
                         f"{how_to_get(filename)}")


def how_to_get(filename: str) -> str:
    """The fix for a missing model file: ``edgepose fetch`` only for the files it really fetches."""
    from edgepose.fetch import FILES

    if any(f.name == filename for f in FILES):
        return f"Run 'edgepose fetch' (it downloads {filename} from the mediapipe wheel on PyPI)"
    return (f"edgepose does not download {filename}: set {MODEL_DIR_ENV} to the folder holding it, "
            f"pass --model-dir, or pass the file path (the default model {DEFAULT_MODEL!r} ships in the "
            "package)")


def _card_for_path(path: Path, backend) -> CardSpec:
    """Identify the card of a model file by its edgepose metadata, its checksum or its name."""
    meta = getattr(backend, "metadata", {}) or {}
    if "edgepose.card" in meta:
        if meta["edgepose.card"] == "dkd":
            from edgepose.models.dkd import dkd_card_spec

            return dkd_card_spec(meta)
        return get_card(meta["edgepose.card"]) if meta["edgepose.card"] in _REGISTRY else _student_spec(meta)
    digest = sha256_file(path)
    for spec in _REGISTRY.values():
        if digest in spec.sha256 or path.name == spec.files[0]:
            return spec
    raise ModelLoadError(
        f"cannot tell which model card reads {str(path)!r}: it has no edgepose metadata and is not a "
        f"known file (sha256 {digest[:12]}...). Pass card=NAME (--card NAME) with one of: "
        f"{', '.join(list_models())}"
    )


def _student_spec(meta) -> CardSpec:
    from edgepose.models.student import student_card_spec

    return student_card_spec(meta)


def load_model(model: str | os.PathLike, *, card: str | None = None, backend: str | None = None,
               num_threads: int | None = None, model_dir=None, **backend_kwargs) -> PoseModel:
    """Open a model card by registered name or by file path.

    Args:
        model: a name from :func:`list_models` or a path to a ``.onnx`` / ``.tflite`` file.
        card: the card to read a file with when it cannot be identified from metadata/checksum.
        backend: force a backend (``ort`` / ``litert``); default by file extension.
        num_threads: intra-op threads for every backend of the card.
        model_dir: an extra folder to search for the card's files.
    """
    from edgepose.backends import open_backend

    kw = dict(backend=backend, num_threads=num_threads, **backend_kwargs)
    path = Path(os.fspath(model))
    if os.fspath(model) in _REGISTRY and not path.is_file():
        spec = get_card(os.fspath(model))
        main = find_file(spec.files[0], model_dir)
        extra = [find_file(f, model_dir) for f in spec.files[1:]]
    elif path.suffix.lower() in (".onnx", ".tflite"):
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {str(path)!r}. Check the path")
        main, extra, spec = path, None, None
    else:
        raise unknown_name("model", os.fspath(model), _REGISTRY,
                           "Pass a registered name or a path to a .onnx / .tflite file")
    main_b = open_backend(main, **kw)
    try:
        if spec is None:
            spec = get_card(card) if card else _card_for_path(main, main_b)
            extra = [find_file(f, model_dir or main.parent) for f in spec.files[1:]]
        others = [open_backend(p, **{k: v for k, v in kw.items() if k != "backend"}) for p in extra]
    except Exception:
        main_b.close()
        raise
    return spec.factory([main_b, *others], spec.name)


__all__ = ["CardSpec", "Estimate", "PoseModel", "Roi", "list_models", "load_model", "get_card",
           "register", "find_file", "how_to_get", "DEFAULT_MODEL", "sha256_file", "default_cache_dir", "MODEL_DIR_ENV"]
