"""The temporal models' training videos must be material a shipped model may use.

compression/data/shippable.py is the allow-list ($EDGEPOSE_ASSETS/ASSETS.md "Rules of use"):
every entry of ``TRAIN_VIDEOS`` (path and frame range) must pass its ``is_shippable``, and no
entry may come from a train_extra folder it EXCLUDES (docs/research-notes.md L1: six excluded
videos were in the list until 2026-12). Path checks only: no assets needed.
"""

from pathlib import Path

import pytest

from edgepose.compression.data import shippable
from edgepose.compression.data.sources import MediaItem
from edgepose.compression.temporal import data as tdata
from edgepose.errors import ConfigError

ROOT = Path("/assets")  # any root: is_shippable compares paths only


def _item(rel, start, stop):
    return MediaItem(str(ROOT / rel), "video", start, stop)


@pytest.mark.parametrize("entry", tdata.TRAIN_VIDEOS, ids=lambda e: Path(e[0]).name)
def test_every_train_video_is_shippable(entry):
    rel, start, stop = entry
    assert rel.startswith("data/"), rel
    assert shippable.is_shippable(_item(rel, start, stop), ROOT / "data"), f"{rel} [{start}, {stop}) is not shippable"


def test_no_train_video_from_an_excluded_folder():
    folders = {Path(rel).parts[2] for rel, _, _ in tdata.TRAIN_VIDEOS if rel.startswith("data/train_extra/")}
    assert folders, "expected train_extra videos"
    assert not folders & set(shippable.EXCLUDED), sorted(folders & set(shippable.EXCLUDED))
    assert folders <= set(shippable.ALLOWED), sorted(folders - set(shippable.ALLOWED))


def test_the_six_removed_videos_stay_out():
    names = {Path(rel).name for rel, _, _ in tdata.TRAIN_VIDEOS}
    for gone in ("examples_taiji.mp4", "resource_data_example_clean_and_jerk.mp4", "resource_data_example_ta_chi.mp4",
                 "demo_demo_skeleton.mp4", "mmaction2_demo.mp4", "demo_test_video_structuralize.mp4"):
        assert gone not in names


def test_check_rejects_an_excluded_video_and_an_eval_range():
    bad = tdata.TRAIN_VIDEOS + (("data/train_extra/gh_open-mmlab_mmaction2/mmaction2_demo.mp4", 0, None),)
    with pytest.raises(ConfigError, match="mmaction2_demo"):
        tdata.check_shippable(bad)
    # body3d_demo frames 299+ are evaluation frames: not shippable training material
    assert tdata.unshippable((("data/mmpose_mini/demo_resources/body3d_demo.mp4", 0, None),))
    # a path outside the assets data folder is never shippable
    assert tdata.unshippable((("elsewhere/clip.mp4", 0, None),))
    tdata.check_shippable()  # the shipped list passes
