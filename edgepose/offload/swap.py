"""Model swap between two frames of a running :class:`~edgepose.offload.runtime.CloudEdgeRuntime`.

``runtime.request_swap(model)`` (any thread: e.g. after ``edgepose adapt``'s gate accepted a
scene-specialised model) loads the new model *outside* the frame loop and queues it; the next
``push`` installs it before it runs the edge model, so every frame is estimated by exactly one
model and the frame order, hold and release logic are untouched: no frame is lost, duplicated
or reordered. The tracker state (ROI, smoother) carries over. Each swap is logged, listed in
``summary()["swaps"]`` and counted by the live stats line (``model swap`` in that second's line).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class ModelSwap:
    """Mixin of :class:`CloudEdgeRuntime`: ``request_swap`` / ``swaps``; the runtime calls
    :meth:`_apply_swap` at the start of ``push`` and :meth:`_close_retired` in ``close``."""

    def request_swap(self, model, *, num_threads: int | None = None, label: str | None = None) -> None:
        """Queue ``model`` (a loaded PoseModel, a card name or a model file) for the next frame.

        The model is loaded here, in the caller's thread, so the frame loop never waits on it; a
        second request before the next frame replaces the first (the first is closed).
        """
        from edgepose.models import PoseModel, load_model

        owned = not isinstance(model, PoseModel)
        new = load_model(model, num_threads=num_threads) if owned else model
        if getattr(new, "has_detector", False) != getattr(self.estimator.model, "has_detector", False):
            from edgepose.errors import ConfigError

            if owned:
                new.close()
            raise ConfigError(f"cannot swap {self.estimator.model.name!r} for {new.name!r}: one finds people itself "
                              "and the other reads a crop; swap to a model of the same kind")
        with self._swap_lock():
            old = getattr(self, "_swap_next", None)
            self._swap_next = (new, owned, label or getattr(new, "name", str(model)), time.perf_counter())
        if old is not None and old[1]:
            old[0].close()

    def _swap_lock(self) -> threading.Lock:
        lock = self.__dict__.get("_swap_mutex")
        if lock is None:
            lock = self.__dict__.setdefault("_swap_mutex", threading.Lock())
        return lock

    @property
    def swaps(self) -> list[dict]:
        """``{"frame", "timestamp_ms", "from", "to", "queued_ms"}`` per swap done, in order."""
        return self.__dict__.setdefault("_swaps", [])

    def _apply_swap(self, frame_index: int, timestamp_ms: int) -> bool:
        """Install a queued model before frame ``frame_index`` is estimated; True when one was."""
        if getattr(self, "_swap_next", None) is None:
            return False
        with self._swap_lock():
            new, owned, label, t_req = self._swap_next
            self._swap_next = None
        est = self.estimator
        old, old_owned = est.model, est._owns_model
        est.model, est._owns_model = new, owned
        if old_owned:
            self.__dict__.setdefault("_retired", []).append(old)  # closed with the runtime
        row = {"frame": int(frame_index), "timestamp_ms": int(timestamp_ms), "from": getattr(old, "name", "?"),
               "to": label, "queued_ms": round((time.perf_counter() - t_req) * 1e3, 1)}
        self.swaps.append(row)
        log.info("model swap before frame %d (t=%d ms): %s -> %s", frame_index, timestamp_ms, row["from"], label)
        return True

    def _close_retired(self) -> None:
        for m in self.__dict__.pop("_retired", []):
            m.close()
        nxt = getattr(self, "_swap_next", None)
        if nxt is not None and nxt[1]:
            nxt[0].close()
        self._swap_next = None
