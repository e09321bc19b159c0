"""Label-only collection samples of :class:`~edgepose.offload.runtime.CloudEdgeRuntime`.

Opt-in (``RuntimeOptions.collect_interval_ms``): offloads are a few % of the
frames, too few crops for a collecting server (``edgepose serve --collect DIR``) to feed
``edgepose adapt --from-collection``. With the option on, at most one keyframe per interval of
media time that was *not* offloaded, while no request of the runtime is in flight and the client
is not backing off, has its crop (the same crop and JPEG as an offload) sent with
:meth:`OffloadClient.submit_sample` (no token of the policy's cap or the client's bucket; marked
``edgepose_purpose=collect`` on the wire) and a generous deadline (:data:`SAMPLE_DEADLINE_S`);
otherwise the keyframe is counted ``skipped_busy`` and the next one tried. A sample is never held
and its answer is never used for a frame; it is not an offload in the offload share, the
offload-rate controller, the policy's cap or :meth:`~edgepose.offload.runtime.CloudEdgeRuntime.offload_trace`. An answered
sample feeds the network estimate (its round trip and server time are real measurements of the
same link and server), and an in-flight one counts in the predicted server wait of an offload.
While in flight a sample holds one of the client's request slots (``ClientOptions.workers``), so
an offload that comes while the others are busy too is refused by the client (counted,
``offloads_refused``) instead of overloading the server into a 503 and a backoff.
``summary()["collection_samples"]``: ``sent`` = ``answered`` + ``failed`` + ``in_flight``
(``in_flight`` is 0 after :meth:`~edgepose.offload.runtime.CloudEdgeRuntime.close`: a sample still unanswered then is failed).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from edgepose.errors import ConfigError
from edgepose.protocol import IMAGE_BYTES

#: the answer deadline of a collection sample: nothing waits on it, so it only bounds how long a
#: sample may take (a stalled server, a lost packet) before it counts as failed
SAMPLE_DEADLINE_S = 2.0


class CollectionSampler:
    """The runtime's collection samples: when one is due, sending it, and counting how each ended.

    Args:
        interval_ms: ``RuntimeOptions.collect_interval_ms`` (0: off).
        client: the runtime's offload client (None: off).
    """

    def __init__(self, interval_ms: float, client):
        if interval_ms > 0 and client is not None and not hasattr(client, "submit_sample"):
            raise ConfigError(f"RuntimeOptions.collect_interval_ms={interval_ms:g} needs a client with "
                              f"submit_sample() (OffloadClient); {type(client).__name__} has none: set it to 0")
        self.interval_ms, self.client = float(interval_ms), client
        self.on = client is not None and self.interval_ms > 0
        self.counts = {"sent": 0, "answered": 0, "failed": 0, "skipped_busy": 0}
        self.pending: list = []  # samples sent and not yet counted
        self._due = -math.inf  # media time (ms) from which the next sample may go

    def maybe_send(self, ts: int, *, busy: bool, encode: Callable[[], tuple | None]) -> None:
        """On a keyframe at media time ``ts``: send a sample when one is due and nothing of the runtime
        (``busy``: an offload of this frame or one in flight; or a sample) is in flight and the client is
        not backing off; ``encode()`` gives the crop's (JPEG bytes, affine) or None."""
        if not self.on or ts < self._due:
            return
        busy = busy or any(not p.done() for p in self.pending) or not self.client.available()
        enc = None if busy else encode()
        p = None
        if enc is not None:
            arr = np.empty(1, dtype=object)
            arr[0] = enc[0].tobytes()
            p = self.client.submit_sample({IMAGE_BYTES: arr}, deadline_s=time.perf_counter() + SAMPLE_DEADLINE_S,
                                          tag=("sample", ts))
        if p is None:
            self.counts["skipped_busy"] += 1  # tried again on the next keyframe
            return
        self.pending.append(p)
        self.counts["sent"] += 1
        self._due = ts + self.interval_ms

    def finish(self, observe: Callable, *, final: bool = False) -> None:
        """Count finished samples (``observe(pending)`` refreshes the network estimate with an answered
        one); with ``final``, one still unanswered (the client is closed) counts as failed."""
        keep = []
        for p in self.pending:
            if not p.done():
                if final:
                    self.counts["failed"] += 1
                else:
                    keep.append(p)
                continue
            if p.reply.status in ("ok", "late"):  # late: after its generous deadline, still answered (and collected)
                self.counts["answered"] += 1
                observe(p)
            else:
                self.counts["failed"] += 1
        self.pending = keep

    def summary(self, observe: Callable) -> dict:
        """``sent`` (= ``answered`` + ``failed`` + ``in_flight``), ``skipped_busy`` (due keyframes that could
        not send one), ``offloads_refused`` (offloads the client refused because a sample held one of its
        request slots)."""
        self.finish(observe)
        refused = getattr(self.client, "sample_stats", {}).get("offloads_refused", 0)
        return dict(self.counts, in_flight=len(self.pending), offloads_refused=refused)
