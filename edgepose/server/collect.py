"""Opt-in collection of the crops the offload server answered, with its answers (continual distillation).

Off by default. ``edgepose serve --collect DIR`` (``ServerOptions.collect_dir``) keeps, for every
image of every successful inference request, the crop as a JPEG (the client's own JPEG bytes when
it sent ``image_bytes``; a quality-95 encoding of a raw ``image``) and the served model's answer::

    DIR/crops/0000000042.jpg    the crop
    DIR/crops/0000000042.json   {"seq", "time", "model", "source", "keypoints": [[x, y, score] x 17] in crop pixels}

``source`` says why the crop was sent: ``offload`` (a hard frame the device offloaded and may use
the answer of) or ``sample`` (a label-only collection sample: a request with the parameter
``edgepose_purpose=collect``, sent by a ``CloudEdgeRuntime`` with
``RuntimeOptions.collect_interval_ms`` > 0, whose answer the device never uses). Offloads alone
are a few % of the frames (about 14 crops per minute of the vtest clip, fewer than adapt's gate
needs); samples, at most one per interval of media time on keyframes that were not offloaded,
fill the collection at a known rate (e.g. ``--collect-interval-ms 500`` on the device: up to 120
crops a minute). Collections written before ``source`` existed have no such key: read it with
:func:`crop_source`, which takes a missing one as ``offload``.

Retention is a ring bounded by count **and** bytes: when either ``max_items`` or ``max_bytes`` would
be exceeded the oldest crops are deleted first, so the folder always holds the most recent
footage (what ``edgepose adapt --from-collection DIR`` learns the current scene from). Numbers
continue across restarts; a write that fails (disk full, permissions) is logged and counted,
never fails the request. Nothing leaves the machine: the folder is local to the server.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from edgepose.errors import ConfigError

log = logging.getLogger(__name__)


SOURCES = ("offload", "sample")


def crop_source(meta: dict) -> str:
    """``offload`` or ``sample`` of a crop's JSON (older collections have no ``source``: offloads)."""
    return str(meta.get("source", "offload"))


class Collector:
    """Writes answered crops into ``folder/crops`` under a count and byte bound (oldest dropped first)."""

    def __init__(self, folder: str | os.PathLike, *, max_items: int = 5000, max_bytes: int = 256 * 1024 * 1024):
        if max_items < 1 or max_bytes < 1024:
            raise ConfigError(f"collection bounds must be max_items >= 1 and max_bytes >= 1024, got "
                              f"{max_items!r} / {max_bytes!r}")
        self.dir = Path(folder) / "crops"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the collection folder {str(self.dir)!r}: {exc}") from None
        self.max_items, self.max_bytes = int(max_items), int(max_bytes)
        self._lock = threading.Lock()
        self._items: list[tuple[int, int]] = []  # (seq, bytes of jpg + json), oldest first
        for p in sorted(self.dir.glob("*.jpg")):
            if p.stem.isdigit():
                j = p.with_suffix(".json")
                self._items.append((int(p.stem), p.stat().st_size + (j.stat().st_size if j.exists() else 0)))
        self._bytes = sum(b for _, b in self._items)
        self._next = self._items[-1][0] + 1 if self._items else 0
        self.stats = {"collected": 0, "samples": 0, "evicted": 0, "write_errors": 0}

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, model: str, images: list, keypoints: np.ndarray, *, source: str = "offload") -> int:
        """Keep each crop (JPEG bytes or (H, W, 3) uint8 RGB) with its answer; returns how many were kept.

        ``source``: ``offload`` or ``sample`` (a label-only collection sample), written into each crop's JSON.
        """
        import cv2

        if source not in SOURCES:
            raise ConfigError(f"collection source must be one of {', '.join(SOURCES)}, got {source!r}")
        kept = 0
        for img, kp in zip(images, np.asarray(keypoints, np.float32).reshape(len(images), -1, 3)):
            if isinstance(img, (bytes, bytearray, memoryview)):
                jpg = bytes(img)
            else:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    continue
                jpg = buf.tobytes()
            with self._lock:
                seq = self._next
                self._next += 1
                meta = json.dumps({"seq": seq, "time": round(time.time(), 3), "model": model, "source": source,
                                   "keypoints": np.round(kp, 3).tolist()}).encode()
                size = len(jpg) + len(meta)
                if size > self.max_bytes:
                    continue
                self._evict(size)
                try:
                    (self.dir / f"{seq:010d}.jpg").write_bytes(jpg)
                    (self.dir / f"{seq:010d}.json").write_bytes(meta)
                except OSError as exc:
                    self.stats["write_errors"] += 1
                    log.warning("collection: cannot write crop %d (%s); continuing without it", seq, exc)
                    continue
                self._items.append((seq, size))
                self._bytes += size
                self.stats["collected"] += 1
                self.stats["samples"] += int(source == "sample")
                kept += 1
        return kept

    def _evict(self, incoming: int) -> None:
        while self._items and (len(self._items) + 1 > self.max_items or self._bytes + incoming > self.max_bytes):
            seq, size = self._items.pop(0)
            for suffix in (".jpg", ".json"):
                try:
                    (self.dir / f"{seq:010d}{suffix}").unlink()
                except OSError:
                    pass
            self._bytes -= size
            self.stats["evicted"] += 1

    def summary(self) -> dict:
        return {"folder": str(self.dir.parent), "items": len(self._items), "bytes": self._bytes,
                "max_items": self.max_items, "max_bytes": self.max_bytes, **self.stats}
