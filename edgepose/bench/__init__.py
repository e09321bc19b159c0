"""The on-device benchmark suite: ``edgepose bench`` and ``edgepose profile``.

* :mod:`~edgepose.bench.suite`: suite YAML -> cases (models x backends x threads x precisions).
* :mod:`~edgepose.bench.runner`: timing, accuracy gate, emulation glue -> the result document.
* :mod:`~edgepose.bench.abtest`: two cases interleaved run by run, per-pair ratios.
* :mod:`~edgepose.bench.video_case`: a model end to end in video mode on a real clip.
* :mod:`~edgepose.bench.emulator`: the roofline model that scales host times to a profile.
* :mod:`~edgepose.bench.graphstats`: per-layer MACs and bytes of ``.onnx`` / ``.tflite`` files.
* :mod:`~edgepose.bench.hostprobe`: measures this machine (``edgepose profile``).
* :mod:`~edgepose.bench.calibrate`: fits a profile's ``cpu.efficiency`` on a published figure.
* :mod:`~edgepose.bench.report`: JSON, Markdown, PNG plots.

Nothing heavy is imported here; submodules import their runtimes when used.
"""

from __future__ import annotations


def run_suite(suite, options=None):
    """Run a suite (a :class:`~edgepose.bench.suite.Suite` or a YAML path); see
    :func:`edgepose.bench.runner.run_suite`."""
    from edgepose.bench.runner import run_suite as _run
    from edgepose.bench.suite import Suite, load_suite

    return _run(suite if isinstance(suite, Suite) else load_suite(suite), options)


__all__ = ["run_suite"]
