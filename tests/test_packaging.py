"""Packaging: every Python package folder is listed in setup.cfg, so a normal (non-editable)
install ships it; the compression folder installs as edgepose.compression."""

import configparser
from pathlib import Path

import pytest

pytestmark = pytest.mark.core
REPO = Path(__file__).resolve().parent.parent


def _listed() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def _on_disk() -> set[str]:
    found = set()
    for root, prefix in (("edgepose", "edgepose"), ("compression", "edgepose.compression"),
                         ("device_profiles", "edgepose.device_profiles")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root)
            found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    return found


def test_every_package_folder_is_listed_in_setup_cfg():
    missing = _on_disk() - _listed()
    assert not missing, f"add to setup.cfg [options] packages: {sorted(missing)}"


def test_setup_cfg_lists_no_package_that_does_not_exist():
    assert not (_listed() - _on_disk())


def test_compression_imports_as_a_subpackage_of_edgepose():
    import edgepose.compression

    assert Path(edgepose.compression.__file__).parent == REPO / "compression"


def _extras() -> dict[str, set[str]]:
    import configparser
    import re as _re

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def names(block: str) -> set[str]:
        return {_re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
                for line in block.splitlines() if line.strip()}

    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    extras["base"] = names(cfg["options"]["install_requires"])
    return extras


def test_every_missing_dependency_message_names_an_extra_that_really_installs_it():
    """``require(module, extra, package=...)`` tells users ``pip install 'edgepose[extra]'``:
    that extra (``base``: the plain install) must list the package."""
    import re as _re

    extras = _extras()
    calls = []
    for path in [*(REPO / "edgepose").rglob("*.py"), *(REPO / "compression").rglob("*.py")]:
        for m in _re.finditer(r'require\(\s*"([\w.]+)",\s*"([\w-]+)"(?:,\s*package="([\w.-]+)")?\)',
                              path.read_text()):
            calls.append((path.name, m.group(1), m.group(2), (m.group(3) or m.group(1).split(".")[0]).lower()))
    assert len(calls) >= 8, calls
    bad = [c for c in calls if c[2] not in extras or c[3].replace("_", "-") not in
           {n.replace("_", "-") for n in extras[c[2]]}]
    assert not bad, bad
    # the TFLite export of compressed models: litert-torch, pinned beside the pinned torch
    assert {"torch", "litert-torch", "ai-edge-litert"} <= extras["compress"]
