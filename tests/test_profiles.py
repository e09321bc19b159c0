"""Device profiles: every shipped YAML validates, broken ones fail with literal messages, every
non-measured number cites a source, and the derived figures follow from the fields."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from edgepose.errors import ConfigError, UnknownNameError
from edgepose.profiles import (
    PROFILE_DIR_ENV,
    dump_profile_yaml,
    host_peaks,
    host_profile_from_measurement,
    list_profiles,
    load_profile,
    profile_from_dict,
    target_peaks,
)

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parent.parent / "device_profiles"
REQUIRED = {"rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "android-midrange", "x86-laptop", "host"}


def rpi4_dict() -> dict:
    return yaml.safe_load((ROOT / "rpi4.yaml").read_text())


def test_the_issue_s_profiles_are_all_shipped():
    assert REQUIRED <= set(list_profiles())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_shipped_profile_validates_and_names_its_file(name):
    prof = load_profile(str(ROOT / f"{name}.yaml"))
    assert prof.name == name
    assert prof.cpu.cores >= 1 and prof.memory.bandwidth_gbs > 0 and prof.frame_budget.frame_ms > 0
    assert prof.networks, "every profile lists at least one network link"


def test_profiles_load_by_name_through_package_data():
    assert load_profile("rpi4").cpu.clusters[0].core == "Cortex-A72"


@pytest.mark.parametrize("name", sorted(REQUIRED - {"host"}))
def test_every_number_not_measured_cites_a_source_in_a_comment(name):
    """A ``key: number`` line needs a comment on it or in the comment block right above it."""
    lines = (ROOT / f"{name}.yaml").read_text().splitlines()
    exempt = {"schema_version"}
    for i, line in enumerate(lines):
        m = re.match(r"^\s*-?\s*([a-z_0-9]+):\s*(-?[0-9.]+)\s*(#.*)?$", line)
        if not m or m.group(1) in exempt:
            continue
        j, above = i - 1, False
        while j >= 0 and lines[j].strip().startswith("#"):
            above = True
            j -= 1
        assert m.group(3) or above, f"{name}.yaml line {i + 1} has no source comment: {line.strip()!r}"


def test_an_unknown_field_names_the_file_the_field_and_the_valid_fields():
    d = rpi4_dict()
    d["cpu"]["cores_count"] = 4
    with pytest.raises(ConfigError) as e:
        profile_from_dict(d, where="rpi4.yaml")
    assert str(e.value) == (
        "rpi4.yaml: unknown field 'cpu.cores_count'. Valid fields of 'cpu': name, arch, isa, "
        "int8_dot_product, clusters, efficiency. Fix the spelling (see device_profiles/SCHEMA.md)")


def test_an_unknown_top_level_field_lists_the_top_level_fields():
    d = rpi4_dict()
    d["gpu"] = "none"
    with pytest.raises(ConfigError, match=r"^rpi4\.yaml: unknown field 'gpu'\. Valid fields of the top "
                                          r"level: schema_version, name, description, source, cpu, memory, "
                                          r"runtimes, sustained_factor, frame_budget, networks, accelerators, "
                                          r"power, measured\."):
        profile_from_dict(d, where="rpi4.yaml")


def test_a_mistyped_field_names_the_type_it_needs():
    d = rpi4_dict()
    d["cpu"]["clusters"][0]["count"] = "4"
    with pytest.raises(ConfigError) as e:
        profile_from_dict(d, where="rpi4.yaml")
    assert str(e.value) == "rpi4.yaml: field 'cpu.clusters[0].count' must be int, got str '4'"


def test_a_bool_is_not_accepted_as_a_number():
    d = rpi4_dict()
    d["memory"]["bandwidth_gbs"] = True
    with pytest.raises(ConfigError, match=r"field 'memory.bandwidth_gbs' must be number, got bool True"):
        profile_from_dict(d, where="rpi4.yaml")


def test_a_missing_required_field_is_named_with_its_meaning():
    d = rpi4_dict()
    del d["memory"]["bandwidth_gbs"]
    with pytest.raises(ConfigError) as e:
        profile_from_dict(d, where="rpi4.yaml")
    assert str(e.value).startswith(
        "rpi4.yaml: missing required field 'memory.bandwidth_gbs' (achieved single-thread copy bandwidth")


def test_an_enum_field_lists_its_values():
    d = rpi4_dict()
    d["source"] = "guessed"
    with pytest.raises(ConfigError) as e:
        profile_from_dict(d, where="rpi4.yaml")
    assert str(e.value) == "rpi4.yaml: field 'source' is 'guessed'; valid values: published, measured"


def test_a_non_positive_peak_is_rejected():
    d = rpi4_dict()
    d["cpu"]["clusters"][0]["freq_ghz"] = 0
    with pytest.raises(ConfigError, match=r"field 'cpu.clusters\[0\].freq_ghz' must be > 0, got 0.0"):
        profile_from_dict(d, where="rpi4.yaml")


def test_a_network_link_with_a_mistyped_field_is_located_by_index():
    d = rpi4_dict()
    d["networks"][1]["rtt"] = 20
    with pytest.raises(ConfigError, match=r"unknown field 'networks\[1\]\.rtt'\. Valid fields of "
                                          r"'networks\[1\]': name, uplink_mbps, downlink_mbps, rtt_ms, "
                                          r"jitter_ms, loss_pct\."):
        profile_from_dict(d, where="rpi4.yaml")


def test_a_file_whose_name_field_disagrees_with_its_name_is_rejected(tmp_path, monkeypatch):
    import edgepose.profiles as P

    d = rpi4_dict()
    d["name"] = "rpi3"
    (tmp_path / "rpi4.yaml").write_text(yaml.safe_dump(d))
    monkeypatch.setattr(P, "_shipped", lambda: {"rpi4": tmp_path / "rpi4.yaml"})
    with pytest.raises(ConfigError, match=r"^rpi4\.yaml: field 'name' is 'rpi3' but the file is rpi4\.yaml$"):
        load_profile("rpi4")


def test_an_unknown_profile_name_lists_the_profiles():
    with pytest.raises(UnknownNameError) as e:
        load_profile("rpi3")
    assert str(e.value).startswith("unknown device profile 'rpi3'; valid choices: android-midrange, host, "
                                   "jetson-nano, jetson-orin-nano, rpi4, rpi5, x86-laptop")


def test_host_without_a_measured_profile_says_which_command_writes_it(tmp_path, monkeypatch):
    monkeypatch.setenv(PROFILE_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"no measured host profile at .*host\.yaml'\. Run 'edgepose "
                                          r"profile' to measure this machine"):
        load_profile("host")


def test_broken_yaml_is_a_config_error_naming_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"^bad\.yaml: not valid YAML"):
        load_profile(str(p))


def test_frame_budget_and_peaks_follow_from_the_fields():
    prof = load_profile("rpi4")
    assert prof.frame_budget.frame_ms == pytest.approx(1000 / prof.frame_budget.target_fps)
    c = prof.cpu.clusters[0]
    assert prof.cpu.peak_gflops("fp32") == pytest.approx(4 * c.freq_ghz * c.fp32_flops_per_cycle)
    tp = target_peaks(prof, 8)  # capped at the profile's 4 cores
    assert tp.threads == 4
    assert tp.fp32_gflops == pytest.approx(4 * c.freq_ghz * c.fp32_flops_per_cycle * prof.cpu.efficiency)


def test_big_little_peaks_take_the_fastest_cores_first():
    prof = load_profile("android-midrange")
    # 2 threads: the 2.4 and 2.2 GHz A76 cores, 16 FLOP/cycle each
    assert prof.cpu.peak_gflops("fp32", 2) == pytest.approx((2.4 + 2.2) * 16)
    # 4 threads add two 1.8 GHz A55 at 8 FLOP/cycle
    assert prof.cpu.peak_gflops("fp32", 4) == pytest.approx((2.4 + 2.2) * 16 + 2 * 1.8 * 8)


FAKE_HOST = dict(
    cpu_model="Test CPU", arch="x86_64", logical_cores=4, physical_cores=4, usable_cores=4,
    isa_flags=["avx2", "fma"], freq_mhz=3000.0, mem_total_gb=16.0, gemm_fp32_gflops_1t=50.0,
    gemm_fp32_gflops=180.0, conv_fp32_gflops_1t=60.0, conv_fp32_gflops=210.0, conv_int8_gops_1t=120.0,
    conv_int8_gops=420.0, litert_conv_fp32_gflops_1t=40.0, litert_conv_fp32_gflops=130.0,
    litert_conv_int8_gops_1t=100.0, litert_conv_int8_gops=340.0, mem_bandwidth_gbs=20.0,
    llc_bytes=8 << 20, cache_bandwidth_gbs=80.0, load_avg_1m=0.1, versions={"numpy": "x"}, seconds=1.0)


def test_host_peaks_interpolate_between_one_thread_and_all_cores():
    # 60 GFLOP/s at 1 thread, 210 at 4: linear -> 60 + 150 * (2 - 1) / 3 = 110 at 2 threads
    p = host_peaks(FAKE_HOST, 2)
    assert (p.fp32_gflops, p.int8_gops, p.bandwidth_gbs, p.threads) == (110.0, 220.0, 20.0, 2)
    assert (p.cache_bytes, p.cache_bandwidth_gbs) == (4 << 20, 80.0)  # half the 8 MiB LLC
    assert host_peaks(FAKE_HOST, 9).threads == 4
    lite = host_peaks(FAKE_HOST, 1, "litert")
    assert (lite.fp32_gflops, lite.int8_gops) == (40.0, 100.0)


def test_a_measured_host_profile_round_trips_through_yaml(tmp_path, monkeypatch):
    from edgepose.bench.hostprobe import HostMeasurement

    m = HostMeasurement(**copy.deepcopy(FAKE_HOST))
    prof = host_profile_from_measurement(m)
    monkeypatch.setenv(PROFILE_DIR_ENV, str(tmp_path))
    (tmp_path / "host.yaml").write_text(dump_profile_yaml(prof, "# measured"))
    back = load_profile("host")
    assert back.is_measured and back.measured["conv_fp32_gflops"] == 210.0
    assert back.cpu.cores == 4
    # a measured profile used as a target gives its measured peaks back
    assert target_peaks(back, 2) == host_peaks(FAKE_HOST, 2)


def test_schema_md_documents_every_field():
    import dataclasses

    import edgepose.profiles as P

    text = (ROOT / "SCHEMA.md").read_text()
    for cls in (P.DeviceProfile, P.Cpu, P.CpuCluster, P.Memory, P.Runtimes, P.FrameBudget,
                P.NetworkLink, P.Power, P.Accelerator):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in text, f"SCHEMA.md does not document {cls.__name__}.{f.name}"


@pytest.mark.backend
def test_edgepose_profile_measures_this_host_into_a_loadable_profile(tmp_path, capsys):
    from edgepose.cli.main import main

    out = tmp_path / "host.yaml"
    assert main(["profile", "--out", str(out), "--repeats", "1"]) == 0
    prof = load_profile(str(out))
    assert prof.source == "measured" and prof.cpu.efficiency == 1.0
    m = prof.measured
    assert m["usable_cores"] >= 1 and m["conv_fp32_gflops_1t"] > 0 and m["mem_bandwidth_gbs"] > 0
    assert m["litert_conv_int8_gops"] > 0 and "numpy" in m["versions"]
    assert f"wrote {out}" in capsys.readouterr().out


def test_edgepose_profile_lists_and_shows_profiles(capsys):
    from edgepose.cli.main import main

    assert main(["profile", "--list"]) == 0
    assert "rpi4" in capsys.readouterr().out
    assert main(["profile", "--show", "rpi4"]) == 0
    out = capsys.readouterr().out
    assert "theoretical peak fp32 48.0 GFLOP/s" in out and "frame budget 66.7 ms" in out
    assert main(["profile", "--validate"]) == 0
