"""Benchmark suites: YAML files in ``benchmarks/`` read into typed specs and expanded into cases.

A suite lists models and, per model, the backends, thread counts and precisions to run; the
cross product is the set of cases. Every field is checked on load: an unknown or mistyped
field raises :class:`~edgepose.errors.ConfigError` naming the file, the field and the valid
fields. ``benchmarks/README.md`` documents the format.

Model references resolve to files, never to a skip: a registered name
(:func:`edgepose.models.list_models`) through the model search path (``EDGEPOSE_MODEL_DIR``,
``--assets ROOT/models``); a relative path against ``--assets ROOT``, the suite's folder, the
working directory, then the model search folders (so ``blazepose/pose_detection.tflite``
resolves inside ``EDGEPOSE_MODEL_DIR``).
A missing file raises :class:`~edgepose.errors.ModelLoadError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.errors import ConfigError, ModelLoadError, unknown_name

#: Case fields a suite may set per case or under ``defaults``; (type, doc).
CASE_FIELDS: dict[str, tuple[type, str]] = {
    "model": (str, "registered model name or .onnx/.tflite path"),
    "name": (str, "case name (default: the model name)"),
    "card": (str, "model card that reads a file edgepose does not recognise"),
    "backends": (list, "backends to run: auto (by extension), ort, litert"),
    "threads": (list, "intra-op thread counts"),
    "precisions": (list, "native, or fp32/int8: the precision to emulate on --device"),
    "warmup": (int, "untimed runs before timing"),
    "runs": (int, "timed runs"),
    "accuracy": (bool, "evaluate accuracy on the evaluation set"),
    "accuracy_gate": (float, "minimum PCK@0.2 x torso over ALL, percent; below it the case FAILS"),
    "reference": (dict, "published latencies: {profile: {ms: float, source: str}}"),
}
VIDEO_FIELDS: dict[str, tuple[type, str]] = {
    "name": (str, "case name"),
    "model": (str, "registered model name or path"),
    "clip": (str, "video file, relative to --assets ROOT or the suite folder"),
    "frames": (int, "frames to process (default: all)"),
    "threads": (int, "intra-op threads"),
}
#: ``peers:`` entry fields: a peer pipeline (``edgepose.bench.peers.PEERS``) and edgepose models on
#: the same clips, interleaved per frame (:mod:`edgepose.bench.peer_cases`).
PEER_FIELDS: dict[str, tuple[type, str]] = {
    "peer": (str, "peer name (python -m edgepose.bench.peers list)"),
    "name": (str, "entry name (default: the peer name)"),
    "against": (list, "edgepose registered model names (or names of this suite's cases) run beside the peer"),
    "clips": (list, "video files, relative to --assets ROOT or the suite folder"),
    "frames": (int, "frames per clip (default: all)"),
    "threads": (int, "intra-op threads for every pipeline, the peer included"),
    "accuracy": (bool, "also run image mode on the evaluation set: PCK@0.2 x torso, own detection"),
}
TOP_FIELDS = ("name", "description", "defaults", "cases", "video", "ab", "peers")
PRECISIONS = ("native", "fp32", "int8")
BACKENDS = ("auto", "ort", "litert")
_EXT_BACKEND = {".onnx": "ort", ".tflite": "litert"}


@dataclass
class CaseSpec:
    """One ``cases:`` entry with the defaults applied (see :data:`CASE_FIELDS`)."""

    model: str
    name: str = ""
    card: str | None = None
    backends: list = field(default_factory=lambda: ["auto"])  # by file extension
    threads: list = field(default_factory=lambda: [2])  # the cores of the reference machine
    precisions: list = field(default_factory=lambda: ["native"])  # run the file as it is
    warmup: int = 5  # enough for XNNPACK/ORT to pack weights and warm caches
    runs: int = 30  # p99 of 30 is the max: use >= 100 runs when p99 matters
    accuracy: bool = False  # the evaluation takes ~10-60 s per model
    accuracy_gate: float | None = None  # None: accuracy reported, never FAILED
    reference: dict = field(default_factory=dict)  # {profile: {ms, source}}


@dataclass
class VideoSpec:
    """One ``video:`` entry: a model run through PoseEstimator in video mode on a clip."""

    model: str
    clip: str
    name: str = ""
    frames: int | None = None  # None: the whole clip
    threads: int = 2  # see CaseSpec.threads


@dataclass
class PeerCaseSpec:
    """One ``peers:`` entry: a peer beside edgepose models on clips, in video mode."""

    peer: str
    against: list
    clips: list
    name: str = ""
    frames: int | None = None  # None: the whole clip
    threads: int = 1  # docs/peers.md: 2 peer threads on 2 shared cores spike
    accuracy: bool = False  # image mode on the 161-person set: ~1-2 min per pipeline


@dataclass
class Case:
    """One concrete benchmark case (a point of models x backends x threads x precisions)."""

    id: str
    name: str
    model: str
    path: Path
    card: str | None
    backend: str
    threads: int
    precision: str
    warmup: int
    runs: int
    accuracy: bool
    accuracy_gate: float | None
    reference: dict


@dataclass
class Suite:
    name: str
    description: str
    path: Path
    cases: list[CaseSpec]
    video: list[VideoSpec]
    ab: list[str] | None
    peers: list[PeerCaseSpec] = field(default_factory=list)


def _check_fields(data, allowed, where, section) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {section} must be a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {section + '.' + str(key)!r}. Valid fields of "
                              f"{section!r}: {', '.join(allowed)}. See benchmarks/README.md")
        tp = allowed[key][0] if isinstance(allowed, dict) else None
        if tp is None or value is None and key in ("accuracy_gate", "card", "frames"):
            continue
        ok = (isinstance(value, bool) if tp is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
              isinstance(value, int) and not isinstance(value, bool) if tp is int else
              isinstance(value, tp))
        if tp is list and key in ("backends", "threads", "precisions", "against", "clips") \
                and not isinstance(value, list):
            value = [value]  # a scalar is a one-element list
            ok = True
            data[key] = value
        if not ok:
            raise ConfigError(f"{where}: field {section + '.' + key!r} must be {tp.__name__}, got "
                              f"{type(value).__name__} {value!r}")


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and validate a suite YAML."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"benchmark suite not found: {str(p)!r}")
    where = p.name
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from exc
    _check_fields(data, dict.fromkeys(TOP_FIELDS, (object, "")), where, "suite")
    defaults = data.get("defaults") or {}
    _check_fields(defaults, {k: v for k, v in CASE_FIELDS.items() if k not in ("model", "name")},
                  where, "defaults")
    cases = []
    for i, raw in enumerate(data.get("cases") or []):
        _check_fields(raw, CASE_FIELDS, where, f"cases[{i}]")
        merged = {**defaults, **raw}
        if "model" not in merged:
            raise ConfigError(f"{where}: cases[{i}] has no 'model' (a registered name or a file path)")
        spec = CaseSpec(**merged)
        spec.name = spec.name or Path(spec.model).stem
        _check_case(spec, where, i)
        cases.append(spec)
    video = []
    for i, raw in enumerate(data.get("video") or []):
        _check_fields(raw, VIDEO_FIELDS, where, f"video[{i}]")
        for req in ("model", "clip"):
            if req not in raw:
                raise ConfigError(f"{where}: video[{i}] has no {req!r}")
        v = VideoSpec(**raw)
        v.name = v.name or f"video:{Path(v.model).stem}"
        video.append(v)
    ab = data.get("ab")
    if ab is not None and (not isinstance(ab, list) or len(ab) != 2):
        raise ConfigError(f"{where}: 'ab' must be a list of two case names, got {ab!r}")
    if not isinstance(data.get("peers") or [], list):
        raise ConfigError(f"{where}: 'peers' must be a list of entries ({', '.join(PEER_FIELDS)})")
    peers = [_peer_entry(raw, where, i, cases) for i, raw in enumerate(data.get("peers") or [])]
    if not cases and not video and not peers:
        raise ConfigError(f"{where}: the suite has no cases, no video and no peers entries")
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: duplicate case names {', '.join(dup)}; give each a distinct 'name'")
    return Suite(str(data.get("name") or p.stem), str(data.get("description") or ""), p, cases, video, ab, peers)


def _peer_entry(raw, where: str, i: int, cases: list[CaseSpec]) -> PeerCaseSpec:
    """A checked ``peers:`` entry; ``against`` names a suite case resolve to its model."""
    from edgepose.bench.peers import PEERS
    from edgepose.models import list_models

    sec = f"peers[{i}]"
    _check_fields(raw, PEER_FIELDS, where, sec)
    for req in ("peer", "against", "clips"):
        if not raw.get(req):
            raise ConfigError(f"{where}: {sec} has no {req!r} ({PEER_FIELDS[req][1]})")
    if raw["peer"] not in PEERS:
        raise ConfigError(f"{where}: {sec}.peer: {unknown_name('peer', raw['peer'], PEERS)}")
    by_case = {c.name: c.model for c in cases}
    models = list_models()
    against = []
    for m in raw["against"]:
        m = by_case.get(m, m) if isinstance(m, str) else m
        if m not in models:
            raise ConfigError(f"{where}: {sec}.against has {m!r}; use registered model names "
                              f"({', '.join(models)}) or this suite's case names ({', '.join(by_case) or 'none'})")
        against.append(m)
    for c in raw["clips"]:
        if not isinstance(c, str):
            raise ConfigError(f"{where}: {sec}.clips has {c!r}; use file paths")
    if raw.get("threads", 1) < 1 or (raw.get("frames") is not None and raw["frames"] < 1):
        raise ConfigError(f"{where}: {sec} needs threads >= 1 and frames >= 1 (or no frames: the whole clip)")
    spec = PeerCaseSpec(**{**raw, "against": against})
    spec.name = spec.name or spec.peer
    return spec


def _check_case(spec: CaseSpec, where: str, i: int) -> None:
    for b in spec.backends:
        if b not in BACKENDS:
            raise ConfigError(f"{where}: cases[{i}].backends has {b!r}; valid: {', '.join(BACKENDS)}")
    for t in spec.threads:
        if not isinstance(t, int) or isinstance(t, bool) or t < 1:
            raise ConfigError(f"{where}: cases[{i}].threads has {t!r}; use positive ints")
    for pr in spec.precisions:
        if pr not in PRECISIONS:
            raise ConfigError(f"{where}: cases[{i}].precisions has {pr!r}; valid: {', '.join(PRECISIONS)}")
    if spec.warmup < 0 or spec.runs < 1:
        raise ConfigError(f"{where}: cases[{i}] needs warmup >= 0 and runs >= 1, "
                          f"got warmup={spec.warmup}, runs={spec.runs}")
    if spec.accuracy_gate is not None and not 0 <= spec.accuracy_gate <= 100:
        raise ConfigError(f"{where}: cases[{i}].accuracy_gate is {spec.accuracy_gate}; it is a "
                          "PCK@0.2 x torso in percent (0-100)")
    for prof, ref in spec.reference.items():
        if not isinstance(ref, dict) or set(ref) - {"ms", "source", "note"} or "ms" not in ref:
            raise ConfigError(f"{where}: cases[{i}].reference.{prof} must be a mapping with 'ms' "
                              f"and 'source' (optional 'note'), got {ref!r}")


def resolve_model(model: str, *, assets: str | os.PathLike | None = None,
                  suite_dir: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """The file of a model reference and its card name (None for a bare file).

    Raises:
        ModelLoadError: the file is not found; the message lists where it looked.
    """
    from edgepose.models import find_file, get_card, list_models, search_dirs

    if model in list_models():
        model_dir = Path(assets) / "models" if assets else None
        return Path(find_file(get_card(model).files[0], model_dir)), model
    ext = Path(model).suffix.lower()
    if ext not in _EXT_BACKEND:
        raise unknown_name("model", model, list_models(),
                           "Use a registered name or a path to a .onnx / .tflite file")
    cands = [Path(model)] if Path(model).is_absolute() else [
        *([Path(assets) / model, Path(assets) / "models" / model] if assets else []),
        *([Path(suite_dir) / model] if suite_dir else []), Path(model),
        *[d / model for d in search_dirs()]]
    for c in cands:
        if c.is_file():
            return c.resolve(), None
    raise ModelLoadError(f"model file {model!r} not found; looked in: {', '.join(str(c) for c in cands)}. "
                         "Pass --assets ROOT (the folder holding models/ and data/) or fix the path")


def expand(suite: Suite, *, assets=None, only: list[str] | None = None) -> list[Case]:
    """The concrete cases of ``suite`` (models resolved to files; missing files raise)."""
    out = []
    for spec in suite.cases:
        if only and spec.name not in only:
            continue
        path, card = resolve_model(spec.model, assets=assets, suite_dir=suite.path.parent)
        native = _EXT_BACKEND[path.suffix.lower()]
        for backend in spec.backends:
            be = native if backend == "auto" else backend
            if be != native:
                raise ConfigError(f"{suite.path.name}: case {spec.name!r} asks backend {be!r} for "
                                  f"{path.name}, which only {native!r} runs; use 'auto'")
            for t in spec.threads:
                for pr in spec.precisions:
                    cid = f"{spec.name}/{be}/t{t}" + ("" if pr == "native" else f"/{pr}")
                    out.append(Case(cid, spec.name, spec.model, path, spec.card or card, be, t, pr,
                                    spec.warmup, spec.runs, spec.accuracy, spec.accuracy_gate,
                                    spec.reference))
    if only:
        missing = sorted(set(only) - {c.name for c in out})
        if missing:
            raise unknown_name("case", missing[0], [c.name for c in suite.cases])
    return out
