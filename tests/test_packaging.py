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
