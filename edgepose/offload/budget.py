"""Kept for :mod:`edgepose.offload.client`, which still imports ``LatencyStats`` from here: the
timing statistics are in :mod:`edgepose.offload.timing`, the controllers in
:mod:`edgepose.offload.controllers`. Delete this module once the client imports the former."""

from edgepose.offload.timing import LatencyStats

__all__ = ["LatencyStats"]
