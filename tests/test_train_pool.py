"""The person-crop pool (data/train_pool): every source is classified for shipping, the shippable
subset drops research-only / unclear sources and COCO pictures, crops are labelled whole; and the
progressive pruning's stages cover the network and prune only where asked."""

import pytest

from tests.conftest import ASSETS, MODELS

from edgepose.compression.data.shippable import (POOL_ALLOWED, POOL_EXCLUDED, is_shippable,  # noqa: E402
                                                 pool_row_shippable, shippable_pool)
from edgepose.compression.data.sources import MediaItem, pool_rows, pool_sources  # noqa: E402
from edgepose.errors import ConfigError  # noqa: E402

DATA = ASSETS / "data"
POOL = DATA / "train_pool"
needs_pool = pytest.mark.skipif(not (POOL / "manifest.csv").is_file(), reason="no data/train_pool")


@needs_pool
def test_every_pool_source_is_classified_once():
    folders = {p.name for p in (POOL / "crops").iterdir() if p.is_dir()}
    assert folders == set(POOL_ALLOWED) | set(POOL_EXCLUDED)
    assert not set(POOL_ALLOWED) & set(POOL_EXCLUDED)


@needs_pool
def test_shippable_pool_is_the_cc_by_sources_without_coco_pictures():
    rows = {r["file"]: r for r in pool_rows(DATA)}
    ship = shippable_pool(DATA)
    assert 1000 < len(ship) < len(rows)
    for it in ship:
        r = rows[it.path.split("train_pool/")[1]]
        assert it.crop and r["file"].split("/")[1] in POOL_ALLOWED and not r["coco_id"]
    assert is_shippable(ship[0], DATA)
    research = [i for i in pool_sources(DATA) if "clothing-co-parsing" in i.path][0]
    assert not is_shippable(research, DATA)  # usable for experiments, never for a shipped model


def test_an_unreviewed_pool_source_is_an_error():
    with pytest.raises(ConfigError, match="not reviewed"):
        pool_row_shippable({"file": "crops/new_source/x.jpg", "coco_id": ""})


def test_crop_items_hash_differently(tmp_path):
    import cv2
    import numpy as np

    from edgepose.compression.data.labels import LabelConfig, cache_key

    f = tmp_path / "a.jpg"
    cv2.imwrite(str(f), np.zeros((8, 8, 3), np.uint8))
    cfg = LabelConfig(teacher=str(MODELS / "movenet" / "movenet_thunder_fp32.onnx"))
    assert cache_key([MediaItem(str(f), "image")], cfg) != cache_key([MediaItem(str(f), "image", crop=True)], cfg)


def test_progressive_stages_cover_the_network_and_prune_only_the_chosen_stage():
    import torch

    from edgepose.compression.importer import import_movenet
    from edgepose.compression.progressive import ProgressiveConfig, prune_stages, stage_convs

    net = import_movenet(str(MODELS / "movenet" / "movenet_lightning_fp32.onnx"))
    convs = stage_convs(net)
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert sum(len(v) for v in convs.values()) == n_conv
    res = prune_stages(net, ["s32"], ProgressiveConfig(importance="magnitude", step_ratio=0.25), None)
    before = {n: m.out_channels for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    after = {n: m.out_channels for n, m in res.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    changed = {n for n in before if before[n] != after[n]}
    assert changed and changed <= set(convs["s32"])
    with pytest.raises(ConfigError, match="step_ratio"):
        ProgressiveConfig(step_ratio=0.9)
