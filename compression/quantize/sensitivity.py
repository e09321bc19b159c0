"""Per-layer int8 sensitivity and the float fallback it chooses (ORT static QDQ).

Pass 1 (:func:`layer_sensitivity`): quantise **one convolution at a time** (its weights and its
input activation; every other node stays float) and measure how far the decoded keypoints move
from the fp32 model on held-out *training* crops (mean px at the model's input size), plus a
proxy PCK against the teacher's pseudo-labels (PCK@0.2 x torso, the evaluation protocol's rule,
with the teacher's keypoints as ground truth). The evaluation set is never touched: choosing the
float layers on it would be tuning on the test set ($EDGEPOSE_ASSETS/ASSETS.md).

Pass 2 (same call): quantise everything, then keep the k most sensitive
convolutions in float for k = 0, 1, 2, 3, 5, 8, ... until the proxy PCK is within ``gate`` points
of fp32; the result is ``QuantizeConfig.exclude_nodes``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .ort_static import QuantizeConfig, calibration_ranges, decoder_nodes, quantize

log = logging.getLogger(__name__)


def _session(path: str, threads: int = 1):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def predict(path: str, crops: list[np.ndarray], threads: int = 1) -> np.ndarray:
    """(N, 17, 3) normalised (y, x, score) of a MoveNet-style ONNX on uint8 crops."""
    s = _session(path, threads)
    i = s.get_inputs()[0]
    dtype = {"tensor(int32)": np.int32, "tensor(uint8)": np.uint8}.get(i.type, np.float32)
    return np.stack([s.run(None, {i.name: c[None].astype(dtype)})[0].reshape(17, 3) for c in crops])


def proxy_pck(pred: np.ndarray, teacher: np.ndarray, min_score: float = 0.3) -> float:
    """PCK@0.2 x torso (percent) of ``pred`` against teacher keypoints scored >= ``min_score``.

    Torso = mean of |l_sho - r_hip| and |r_sho - l_hip| from the teacher (COCO-17 indices 5, 6, 11, 12).
    """
    hits = tot = 0
    for p, t in zip(pred, teacher):
        ok = t[:, 2] >= min_score
        d = [np.linalg.norm(t[a, :2] - t[b, :2]) for a, b in ((5, 12), (6, 11)) if ok[a] and ok[b]]
        if not d or not ok.any():
            continue
        err = np.linalg.norm(p[:, :2] - t[:, :2], axis=1)
        hits += int((err[ok] < 0.2 * float(np.mean(d))).sum())
        tot += int(ok.sum())
    return 100.0 * hits / max(tot, 1)


def mean_px(a: np.ndarray, b: np.ndarray, size: int) -> float:
    """Mean keypoint distance (input px) between two (N, 17, 3) predictions."""
    return float(np.linalg.norm(a[..., :2] - b[..., :2], axis=-1).mean() * size)


@dataclass
class SensitivityRow:
    """One convolution quantised alone: its keypoint error vs fp32 and the proxy PCK."""

    node: str
    err_px: float
    proxy_pck: float


@dataclass
class SensitivityReport:
    """Per-layer table and the exclusion search.

    Attributes:
        fp32_proxy_pck / int8_proxy_pck / int8_err_px: fp32 and fully quantised references.
        rows: per-convolution results, most sensitive first.
        exclusion_steps: ``{"k", "excluded", "proxy_pck", "err_px"}`` per step of the search.
        exclude_nodes: the chosen float nodes (empty if full int8 passes the gate).
        gate: allowed proxy PCK drop (points).
    """

    fp32_proxy_pck: float
    int8_proxy_pck: float
    int8_err_px: float
    rows: list[SensitivityRow] = field(default_factory=list)
    exclusion_steps: list[dict] = field(default_factory=list)
    exclude_nodes: list[str] = field(default_factory=list)
    gate: float = 1.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self, top: int = 10) -> str:
        lines = [f"fp32 proxy PCK {self.fp32_proxy_pck:.1f}, full int8 {self.int8_proxy_pck:.1f} "
                 f"({self.int8_err_px:.2f} px from fp32). Held-out training crops, teacher pseudo-labels.", "",
                 f"Most sensitive convolutions (quantised alone, top {top} of {len(self.rows)}):", "",
                 "| rank | node | px vs fp32 | proxy PCK |", "|---:|---|---:|---:|"]
        lines += [f"| {i + 1} | `{r.node}` | {r.err_px:.3f} | {r.proxy_pck:.1f} |" for i, r in enumerate(self.rows[:top])]
        lines += ["", f"Exclusion search (gate: proxy PCK drop <= {self.gate} points):", "",
                  "| float convs | proxy PCK | px vs fp32 |", "|---:|---:|---:|"]
        lines += [f"| {s['k']} | {s['proxy_pck']:.1f} | {s['err_px']:.2f} |" for s in self.exclusion_steps]
        lines.append("")
        lines.append(f"Chosen nodes_to_exclude: {self.exclude_nodes or 'none'}")
        return "\n".join(lines) + "\n"


def conv_nodes(onnx_path: str) -> list[str]:
    """Names of the body's Conv nodes (decoder excluded)."""
    import onnx

    m = onnx.load(onnx_path)
    dec = set(decoder_nodes(m))
    return [n.name for n in m.graph.node if n.op_type == "Conv" and n.name not in dec]


def layer_sensitivity(onnx_fp32: str | os.PathLike, calibration: list[np.ndarray], val_crops: list[np.ndarray],
                      val_teacher: np.ndarray, cfg: QuantizeConfig = QuantizeConfig(), *, gate: float = 1.0,
                      steps=(0, 1, 2, 3, 5, 8, 12, 16, 24), layers: list[str] | None = None,
                      threads: int = 1, progress: bool = True) -> SensitivityReport:
    """Per-convolution int8 sensitivity, then the smallest float fallback meeting ``gate``.

    Args:
        onnx_fp32: the fp32 model (MoveNet-style keypoint output).
        calibration: training crops for the activation ranges.
        val_crops / val_teacher: held-out training crops and the teacher's (17, 3) keypoints
            normalised to them (never the evaluation set).
        cfg: quantisation options (calibration method etc.).
        gate: allowed proxy PCK drop vs fp32, in points.
        steps: numbers of most-sensitive convolutions kept float, tried in order.
        layers: restrict pass 1 to these nodes (default: every body Conv).
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    onnx_fp32 = os.fspath(onnx_fp32)
    size = int(val_crops[0].shape[0])
    ref = predict(onnx_fp32, val_crops, threads)
    fp32_pck = proxy_pck(ref, val_teacher)
    crops = list(calibration)[: cfg.num_calibration]
    data, _ = calibration_ranges(onnx_fp32, crops, cfg)
    layers = layers if layers is not None else conv_nodes(onnx_fp32)
    with tempfile.TemporaryDirectory(prefix="edgepose-sens-") as tmp:
        def score(path):
            p = predict(path, val_crops, threads)
            return mean_px(p, ref, size), proxy_pck(p, val_teacher)

        full = os.path.join(tmp, "full.onnx")
        quantize(onnx_fp32, full, cfg, calibration=crops, tensors_data=data)
        full_err, full_pck = score(full)
        rows = []
        for node in tqdm(layers, desc="int8 sensitivity", unit="layer", disable=not progress):
            q = os.path.join(tmp, "one.onnx")
            quantize(onnx_fp32, q, cfg, calibration=crops, tensors_data=data, nodes_to_quantize=[node])
            e, p = score(q)
            rows.append(SensitivityRow(node, e, p))
        rows.sort(key=lambda r: -r.err_px)
        rep = SensitivityReport(fp32_pck, full_pck, full_err, rows, gate=gate)
        for k in steps:
            if k > len(rows):
                break
            excl = [r.node for r in rows[:k]]
            if k == 0:
                e, p = full_err, full_pck
            else:
                q = os.path.join(tmp, f"excl{k}.onnx")
                quantize(onnx_fp32, q, replace(cfg, exclude_nodes=tuple(cfg.exclude_nodes) + tuple(excl)),
                         calibration=crops, tensors_data=data)
                e, p = score(q)
            rep.exclusion_steps.append({"k": k, "excluded": excl, "proxy_pck": p, "err_px": e})
            log.info("int8 with %d float convs: proxy PCK %.1f (fp32 %.1f), %.2f px", k, p, fp32_pck, e)
            if fp32_pck - p <= gate:
                rep.exclude_nodes = excl
                break
        else:
            best = max(rep.exclusion_steps, key=lambda s: s["proxy_pck"])
            rep.exclude_nodes = best["excluded"]
            log.warning("no exclusion set met the gate (%.1f points); keeping the best (%d float convs)",
                        gate, len(best["excluded"]))
    rep.seconds = time.perf_counter() - t0
    return rep


__all__ = ["SensitivityReport", "SensitivityRow", "conv_nodes", "layer_sensitivity",
           "mean_px", "predict", "proxy_pck"]
