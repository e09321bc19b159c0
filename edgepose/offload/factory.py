"""Wiring for :meth:`CloudEdgeRuntime.create <edgepose.offload.runtime.CloudEdgeRuntime.create>`:
the edge estimator, an embedded (or remote) server and the emulated link in one call."""

from __future__ import annotations

from edgepose.offload.client import ClientOptions, OffloadClient
from edgepose.offload.netem import LinkSpec, NetworkEmulator, get_link
from edgepose.offload.runtime_options import RuntimeOptions


def build_runtime(cls, edge_model: str = "movenet-lightning-int8", *, server: str | None = "embedded",
                  teacher: str = "movenet-thunder-fp32", link: "str | LinkSpec" = "loopback", profile=None,
                  seed: int = 0, options: RuntimeOptions | None = None,
                  client_options: ClientOptions | None = None, num_threads: int | None = None,
                  server_threads: int | None = None, estimator_options=None,
                  collect_interval_ms: float | None = None):
    """``cls(estimator, client=..., link=..., options=...)``: estimator, (embedded) server and client
    in one call (:meth:`~edgepose.offload.runtime.CloudEdgeRuntime.create`).

    Args:
        edge_model: the on-device model card.
        server: ``"embedded"`` (serve ``teacher`` on loopback in this process), a server URL,
            or None (edge only).
        teacher: the served model name (and the embedded server's model), or ``NAME=FILE``: the
            embedded server serves that model file under NAME (e.g. an int8 build of the teacher).
        link: emulated link name (a preset, or a link of ``profile``) or a LinkSpec;
            ``none`` means no server.
        profile: device profile (name or DeviceProfile) for link figures and the budget.
        seed: network emulation seed.
        num_threads: the edge model's threads.
        server_threads: the embedded server model's threads (default: ``num_threads``).
        estimator_options: the edge :class:`~edgepose.EstimatorOptions` (video mode; default
            ``EstimatorOptions(running_mode="video")``), e.g. ``person_selection="nearest"``.
        collect_interval_ms: overrides ``options.collect_interval_ms`` (None: keep it): at most one
            label-only collection sample per this many ms of media time, so a server run with
            ``edgepose serve --collect DIR`` keeps enough crops for ``edgepose adapt --from-collection``
            (0: off).
        options: :class:`RuntimeOptions` (default: the profile's budget).
        client_options: :class:`ClientOptions` (default: the served model, ``seed``).
    """
    from edgepose.estimator import EstimatorOptions, PoseEstimator
    from edgepose.server.app import PoseServer

    if profile is not None and isinstance(profile, str):
        from edgepose.profiles import load_profile

        profile = load_profile(profile)
    spec = link if isinstance(link, LinkSpec) else get_link(link, profile)
    if options is None and profile is not None:
        options = RuntimeOptions(budget_ms=profile.frame_budget.frame_ms)
    if collect_interval_ms is not None:  # checked here, before anything is loaded
        from dataclasses import replace

        options = replace(options or RuntimeOptions(), collect_interval_ms=collect_interval_ms)
    est = PoseEstimator(edge_model, options=estimator_options or EstimatorOptions(running_mode="video"),
                        num_threads=num_threads)
    owned: list = []
    client = None
    if server is not None and spec.available:
        name, sep, path = teacher.partition("=")
        if not (sep and name and path):
            name, path = teacher, teacher
        if server == "embedded":
            srv = PoseServer.embedded(path, num_threads=server_threads or num_threads, name=name)
            owned.append(srv)
            server = srv.url
        copts = client_options or ClientOptions(model=name, seed=seed)
        emu = NetworkEmulator(spec, seed=seed) if spec.name != "loopback" or spec.rtt_ms else None
        client = OffloadClient(server, options=copts, emulator=emu)
    rt = cls(est, client=client, link=spec, options=options)
    rt._owned = owned
    return rt
