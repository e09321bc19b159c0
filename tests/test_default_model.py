"""The model the base install ships: identified, licensed, as accurate as its card says, rebuildable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepose.models import DEFAULT_MODEL, find_file, get_card, load_model, sha256_file

DATA = Path(__file__).resolve().parent.parent / "edgepose" / "data"
CARD = json.loads((DATA / "movenet_lightning_int8_qdq.json").read_text())


def test_the_shipped_file_matches_its_card_and_the_registry():
    path = DATA / CARD["file"]
    assert find_file(get_card(DEFAULT_MODEL).files[0]) == path  # found in the package, no fetch
    assert sha256_file(path) == CARD["sha256"] and CARD["sha256"] in get_card(DEFAULT_MODEL).sha256
    assert path.stat().st_size == CARD["bytes"] <= 3_000_000
    assert CARD["source"]["licence"] == "Apache-2.0" and "Apache License 2.0" in CARD["licence"]
    assert CARD["calibration"]["material"].startswith("shippable_sources")
    notice = (DATA / "NOTICE.md").read_text()
    assert CARD["file"] in notice and "astronaut.jpg" in notice


def test_the_card_records_accuracy_within_97_percent_of_fp32_and_a_speed_up():
    acc = CARD["accuracy"]
    assert acc["int8_qdq"] >= 0.97 * acc["fp32_source"]
    lat = CARD["latency_ms"]["1_thread"]
    assert lat["int8_qdq"] < lat["fp32_source"]


@pytest.mark.backend
def test_the_shipped_model_reproduces_its_card_accuracy(assets):
    from edgepose.eval.runner import ALL, evaluate

    with load_model(DEFAULT_MODEL, num_threads=2) as model:
        assert model.backend.metadata["edgepose.card"] == DEFAULT_MODEL
        report = evaluate(model, root=assets / "data", progress=False)
    assert report.row(ALL).n_people == 161
    # int8 kernels differ a little between CPUs (VNNI or not): half a point
    assert report.row(ALL).pck_torso == pytest.approx(CARD["accuracy"]["int8_qdq"], abs=0.5)


@pytest.mark.slow
def test_a_rebuild_from_the_repository_and_the_assets_is_byte_identical(assets, tmp_path):
    from edgepose.compression.default_model import build

    card = build(assets, tmp_path / "out", tmp_path / "cache", evaluate_model=False)
    assert card["sha256"] == CARD["sha256"]
    assert card["calibration"] == CARD["calibration"]
