"""A served pose model that can stall before answering (a slow or stuck server, for offload tests)."""

from __future__ import annotations

import time

from edgepose.server import PoseServedModel


class Stallable(PoseServedModel):
    """The pose model with an optional stall before answering."""

    stall_s = 0.0

    def infer(self, inputs, parameters):
        if self.stall_s:
            time.sleep(self.stall_s)
        return super().infer(inputs, parameters)
