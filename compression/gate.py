"""The accuracy gate of ``edgepose compress``: score every candidate, refuse any below the floor,
recommend the fastest one that passes.

Every candidate model file is scored on held-out sets (:func:`score_heldout`,
:func:`score_user_val`, :func:`score_eval_set`): the user's labelled validation set when given,
otherwise the agreement with the teacher on held-out crops of the training media (files never
used for training or calibration), and in this repository also the 161-person evaluation set.
The floor is a fraction (default 0.97) of the *input* model's score on the same set; a candidate
must reach it on every gate set. :func:`select` then recommends the fastest candidate that
passes (latency = the device figure when there is one, else the host's), says whether it meets
the latency budget, and why. The input model itself is always a candidate, so there is always
something that passes: when nothing compressed passes, the report says so and the input model
is the recommendation.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
from edgepose.errors import ConfigError

log = logging.getLogger(__name__)

#: Default floor: a candidate must keep at least this fraction of the input model's score.
DEFAULT_FLOOR = 0.97
#: Gate-set names (keys of :attr:`Candidate.scores`).
HELDOUT, USER_VAL, EVAL_SET = "heldout_teacher", "user_val", "eval_161"
SET_LABELS = {HELDOUT: "agreement with the teacher, held-out training crops",
              USER_VAL: "user validation set, PCK@0.2 torso",
              EVAL_SET: "161-person evaluation set, PCK@0.2 torso"}


@dataclass
class Candidate:
    """One model file the gate considers.

    Attributes:
        name: short name (``input_fp32``, ``input_int8_ort``, ``student_int8``, ...).
        path: the model file.
        what: one line saying what it is.
        scores: gate set -> score (percent).
        host_ms: median latency measured on this host (None: not timed).
        device_ms: the device figure (emulated for a published profile; None: no device / not
            emulable for this runtime).
        recommendable: False for reference files (``--baseline``) that compress did not make.
        passes_floor / within_budget / refused_because: filled in by :func:`select`.
    """

    name: str
    path: str
    what: str
    scores: dict[str, float] = field(default_factory=dict)
    host_ms: float | None = None
    device_ms: float | None = None
    recommendable: bool = True
    passes_floor: bool | None = None
    within_budget: bool | None = None
    refused_because: str = ""

    def latency(self, device: bool | None = None) -> float:
        """The latency the selection ranks by (inf: untimed). ``device`` True: the device figure only
        (a candidate without one is not comparable with a device budget); False: the host's; None:
        the device figure, else the host's."""
        if device is None:
            device = self.device_ms is not None
        v = self.device_ms if device else self.host_ms
        return math.inf if v is None else float(v)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Selection:
    """What :func:`select` decided.

    Attributes:
        name / path: the recommended candidate.
        floor: floor fraction; thresholds: gate set -> minimum score.
        budget_ms: the latency budget (None: none given); latency_kind: what ``device_ms`` is.
        within_budget: whether the recommended one meets the budget (None: no budget).
        reason: one sentence on why it was chosen (Markdown).
    """

    name: str
    path: str
    floor: float
    thresholds: dict[str, float]
    budget_ms: float | None
    within_budget: bool | None
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_floor(floor: float) -> float:
    """Validate a floor fraction; raises ValueError naming the valid range."""
    if not isinstance(floor, (int, float)) or not 0.0 < float(floor) <= 1.0:
        raise ConfigError(f"floor must be a fraction of the input model's score in (0, 1], e.g. 0.97 "
                         f"(= 97 %), got {floor!r}")
    return float(floor)


def select(candidates: list[Candidate], *, reference: str, floor: float = DEFAULT_FLOOR,
           budget_ms: float | None = None, gate_sets: list[str] | None = None) -> Selection:
    """Mark each candidate against the floor and the budget; recommend the fastest that passes.

    Args:
        candidates: scored (and timed) candidates; ``reference`` must be among them and scored.
        reference: the input model's candidate name (the floor is a fraction of its scores).
        floor: fraction of the reference's score a candidate must reach on every gate set.
        budget_ms: latency budget compared with :meth:`Candidate.latency` (None: no budget).
        gate_sets: the gate sets (default: every set the reference was scored on).

    Raises:
        ValueError: no reference, a reference without scores, or a bad floor.
    """
    floor = check_floor(floor)
    by_name = {c.name: c for c in candidates}
    if reference not in by_name:
        raise ConfigError(f"reference candidate {reference!r} is not among {sorted(by_name)}")
    ref = by_name[reference]
    sets = list(gate_sets if gate_sets is not None else ref.scores)
    if not sets or any(s not in ref.scores for s in sets):
        raise ConfigError(f"the reference {reference!r} must be scored on every gate set {sets}; got {ref.scores}")
    thresholds = {s: floor * ref.scores[s] for s in sets}
    # once any candidate has a device figure, candidates rank (and meet the budget) by device figures
    # only: a host millisecond is not comparable with an emulated device one (LiteRT files get none)
    device = any(c.device_ms is not None for c in candidates)
    for c in candidates:
        missing = [s for s in sets if c.scores.get(s) is None or not np.isfinite(c.scores[s])]
        low = [s for s in sets if s not in missing and c.scores[s] < thresholds[s] - 1e-9]
        c.passes_floor = not missing and not low
        unknown = budget_ms is None or (device and c.device_ms is None)
        c.within_budget = None if unknown else c.latency(device) <= budget_ms
        if missing:
            c.refused_because = "not scored on " + ", ".join(missing)
        elif low:
            c.refused_because = "below the floor on " + "; ".join(
                f"{s} ({c.scores[s]:.1f} < {thresholds[s]:.1f})" for s in low)
        elif not c.recommendable:
            c.refused_because = "reference file, not made by compress"
    ok = [c for c in candidates if c.passes_floor and c.recommendable]
    if not ok:  # the reference passes its own floor unless it was marked unrecommendable
        raise ConfigError("no recommendable candidate meets the floor (the input model should)")
    best = min(ok, key=lambda c: (c.latency(device), -sum(c.scores[s] for s in sets)))
    lat = _fmt_ms(best)
    floor_txt = f"{100 * floor:.0f} % of the input model's score on " + " and ".join(sets)
    refused = [c for c in candidates if c.recommendable and not c.passes_floor]
    refused_txt = (f"; refused below the floor: {', '.join(f'`{c.name}`' for c in refused)}" if refused else "")
    if budget_ms is None:
        reason = (f"`{best.name}` is the fastest candidate ({lat}) that keeps at least {floor_txt}"
                  f"{refused_txt}.")
    elif best.within_budget:
        reason = (f"`{best.name}` is the fastest candidate ({lat}) that keeps at least {floor_txt}, "
                  f"and it meets the {budget_ms:.3g} ms budget{refused_txt}.")
    else:
        fits = [c for c in candidates if c.within_budget and c.recommendable]
        reason = (f"**No candidate meets both the floor and the {budget_ms:.3g} ms budget**"
                  + (f" (within the budget but below the floor: {', '.join(f'`{c.name}`' for c in fits)})"
                     if fits else " (none is within the budget)")
                  + f"; `{best.name}` is recommended as the fastest candidate ({lat}) that keeps at least "
                    f"{floor_txt}.")
    for c in candidates:
        if c is not best and c.passes_floor and c.recommendable:
            c.refused_because = (f"passes, but has no device figure to rank against `{best.name}`'s "
                                 "(the emulator models ONNX Runtime files only)" if device and c.device_ms is None
                                 else f"passes, but slower than `{best.name}`")
    log.info("recommended %s: %s", best.name, reason)
    return Selection(best.name, best.path, floor, thresholds, budget_ms,
                     None if budget_ms is None else bool(best.within_budget), reason)


def _fmt_ms(c: Candidate) -> str:
    if c.device_ms is not None:
        return f"{c.device_ms:.1f} ms device figure, {c.host_ms:.1f} ms measured here" if c.host_ms else \
            f"{c.device_ms:.1f} ms device figure"
    return f"{c.host_ms:.1f} ms measured here" if c.host_ms is not None else "untimed"


# ---------------------------------------------------------------------------------- scorers


def predict_crops(path: str, crops: list[np.ndarray], threads: int = 1) -> np.ndarray:
    """(N, 17, 3) normalised (y, x, score) of a MoveNet-style ONNX or TFLite file on uint8 crops."""
    if os.fspath(path).endswith(".tflite"):
        from edgepose._optional import require

        interpreter = require("ai_edge_litert.interpreter", "tflite", package="ai-edge-litert")
        it = interpreter.Interpreter(model_path=os.fspath(path), num_threads=threads)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]["index"]
        out = []
        for c in crops:
            it.set_tensor(i["index"], c[None].astype(i["dtype"]))
            it.invoke()
            out.append(it.get_tensor(o).reshape(17, 3).copy())
        return np.stack(out)
    if runtime_card(path) in ("student", "dkd"):  # another architecture / input size: through its card
        return predict_with_card(path, crops, threads)
    from .quantize.sensitivity import predict

    return predict(os.fspath(path), crops, threads)


def runtime_card(path: str) -> str | None:
    """The ``edgepose.card`` of an ONNX file (None: no such metadata, or not ONNX)."""
    if not os.fspath(path).endswith(".onnx"):
        return None
    import onnx

    m = onnx.load(os.fspath(path), load_external_data=False)
    return next((p.value for p in m.metadata_props if p.key == "edgepose.card"), None)


def predict_with_card(path: str, crops: list[np.ndarray], threads: int = 1) -> np.ndarray:
    """(N, 17, 3) normalised (y, x, score) of any card's file on uint8 crops, each crop the whole frame
    (the card resizes it to its own input size; a DKD file runs each crop as a keyframe)."""
    from edgepose.models import Roi, load_model

    out = []
    with load_model(os.fspath(path), num_threads=threads) as m:
        for c in crops:
            h, w = c.shape[:2]
            if hasattr(m, "reset"):
                m.reset()
            e = m.estimate(c, Roi.full_frame(w, h))
            out.append(np.column_stack([e.keypoints[:, 1] / h, e.keypoints[:, 0] / w, e.scores]))
    return np.stack(out).astype(np.float32)


def score_heldout(path: str, crops: list[np.ndarray], teacher_kps: np.ndarray, threads: int = 1) -> float:
    """Agreement with the teacher (PCK@0.2 x the teacher's torso, percent) on held-out crops.

    ``crops`` must be at the model's input size (the teacher keypoints are normalised to them)."""
    from .quantize.sensitivity import proxy_pck

    return proxy_pck(predict_crops(path, crops, threads), teacher_kps)


def load_user_val(ann_file: str, images: str | None = None) -> list:
    """People of a COCO-keypoints JSON (the user's labelled validation set); images relative to
    ``images`` (default: the JSON's folder). Persons with fewer than 6 of the 13 joints are dropped."""
    from pathlib import Path

    from edgepose.eval.datasets import _coco_people

    base = Path(images) if images else Path(ann_file).parent
    people = _coco_people(USER_VAL, Path(ann_file), "coco17", lambda f: base / f)
    if not people:
        raise ConfigError(f"the validation set {ann_file!r} has no person with at least 6 of the 13 shared "
                         "joints labelled; pass a COCO person-keypoints JSON (--val-data)")
    return people


def score_user_val(path: str, people: list, threads: int = 1) -> float:
    """PCK@0.2 x torso (percent, 13 joints, ASSETS.md crops) of a model file on the user's people."""
    from edgepose.eval.metrics import pck_torso
    from edgepose.eval.runner import predict
    from edgepose.models import load_model

    with load_model(path, num_threads=threads) as m:
        res = predict(m, people, progress=False)
    return float(pck_torso(np.stack([r.keypoints for r in res]), np.stack([r.person.keypoints for r in res])).value)


def eval_set_available(data_root: str | os.PathLike | None) -> bool:
    """Whether ``data_root`` holds this repository's evaluation sets (coco_mini + mmpose_mini)."""
    from pathlib import Path

    return bool(data_root) and (Path(data_root) / "coco_mini" / "annotations").is_dir() and \
        (Path(data_root) / "mmpose_mini").is_dir()


def score_eval_set(path: str, data_root: str, threads: int = 1, datasets=None) -> dict:
    """The 161-person evaluation set (:func:`edgepose.eval.runner.evaluate`): PCK ALL / HARD + rows."""
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    with load_model(path, num_threads=threads) as m:
        r = evaluate(m, root=data_root, progress=False, datasets=datasets)
    hard = [x for x in r.rows if x.name == "HARD"]
    return {"pck_torso": r.row("ALL").pck_torso, "hard_pck_torso": hard[0].pck_torso if hard else None,
            "n_people": r.row("ALL").n_people, "rows": r.to_dict()["rows"]}


__all__ = ["Candidate", "DEFAULT_FLOOR", "EVAL_SET", "HELDOUT", "SET_LABELS", "Selection", "USER_VAL",
           "check_floor", "eval_set_available", "load_user_val", "predict_crops", "predict_with_card", "runtime_card",
           "score_eval_set",
           "score_heldout", "score_user_val", "select"]
