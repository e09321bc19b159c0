"""The assets folder setting: explicit path, $EDGEPOSE_ASSETS, the checkout default, clear errors."""

from pathlib import Path

import pytest

from edgepose import assets
from edgepose.assets import ASSETS_ENV, AssetsNotFoundError, assets_dir
from edgepose.errors import EdgePoseError


@pytest.mark.core
def test_explicit_path_wins_over_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path / "elsewhere"))
    assert assets_dir(tmp_path) == tmp_path


@pytest.mark.core
def test_the_variable_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path))
    assert assets_dir() == tmp_path


@pytest.mark.core
def test_a_missing_folder_is_an_edgepose_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(ASSETS_ENV, str(tmp_path / "missing"))
    with pytest.raises(AssetsNotFoundError, match=f"{ASSETS_ENV}") as e:
        assets_dir()
    assert isinstance(e.value, EdgePoseError)
    assert assets_dir(check=False) == tmp_path / "missing"


@pytest.mark.core
def test_checkout_default_and_installed_package(monkeypatch):
    monkeypatch.delenv(ASSETS_ENV, raising=False)
    repo = Path(assets.__file__).resolve().parent.parent
    assert assets_dir(check=False) == repo.parent / "shared" / "assets"
    monkeypatch.setattr(assets, "checkout_default", lambda: None)  # an installed package
    with pytest.raises(AssetsNotFoundError, match=f"set {ASSETS_ENV}"):
        assets_dir()
