"""The command line: listing, unknown names with choices, run on a real clip, README commands."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgepose.cli.main import main

REPO = Path(__file__).resolve().parent.parent


def test_models_lists_every_card(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("movenet-lightning-int8", "movenet-thunder-fp32", "blazepose-full"):
        assert name in out


def test_unknown_model_lists_valid_choices(capsys, tmp_path):
    rc = main(["run", "demo", "--model", "movenet-huge", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown model 'movenet-huge'; valid choices: blazepose-full, blazepose-heavy" in err


def test_unknown_option_is_rejected_with_usage(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["run", "x.mp4", "--modle", "m"])
    assert ei.value.code == 2
    assert "unrecognized arguments: --modle" in capsys.readouterr().err


@pytest.mark.backend
def test_run_writes_jsonl_and_annotated_video_for_a_real_clip(assets, tmp_path, capsys):
    clip = assets / "data/tfjs_testdata/pose_1.mp4"
    rc = main(["run", str(clip), "--model", "movenet-lightning-int8", "--out", str(tmp_path),
               "--max-frames", "12", "--no-progress"])
    assert rc == 0
    lines = (tmp_path / "pose_1.poses.jsonl").read_text().splitlines()
    assert len(lines) == 12
    first = json.loads(lines[0])
    assert first["source"] == "edge" and len(first["poses"][0]["keypoints"]) == 17
    assert (tmp_path / "pose_1.annotated.mp4").stat().st_size > 10_000
    assert "12 frames, person found in 12" in capsys.readouterr().out


@pytest.mark.backend
def test_run_with_the_learned_smoother_changes_the_track_and_bad_choice_is_named(assets, tmp_path, capsys):
    clip = assets / "data/tfjs_testdata/pose_1.mp4"
    kps = {}
    for sm in ("none", "learned"):
        rc = main(["run", str(clip), "--model", "movenet-lightning-int8", "--out", str(tmp_path / sm),
                   "--max-frames", "8", "--no-progress", "--no-video", "--smoother", sm])
        assert rc == 0
        lines = (tmp_path / sm / "pose_1.poses.jsonl").read_text().splitlines()
        kps[sm] = [json.loads(x)["poses"][0]["keypoints"] for x in lines]
    assert kps["none"][0] != kps["learned"][0] or kps["none"][-1] != kps["learned"][-1]
    with pytest.raises(SystemExit):
        main(["run", str(clip), "--smoother", "kalman"])
    assert "argument --smoother: invalid choice: 'kalman'" in capsys.readouterr().err


@pytest.mark.backend
def test_run_can_follow_the_nearest_person_in_a_crowd(assets, tmp_path, capsys):
    clip = assets / "data/opencv_doc/vtest.avi"
    rc = main(["run", str(clip), "--model", "movenet-lightning-int8", "--out", str(tmp_path), "--max-frames", "6",
               "--no-progress", "--no-video", "--person-selection", "nearest"])
    assert rc == 0
    lines = [json.loads(x) for x in (tmp_path / "vtest.poses.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(x["poses"] for x in lines)
    with pytest.raises(SystemExit):
        main(["run", str(clip), "--person-selection", "biggest"])
    assert "argument --person-selection: invalid choice: 'biggest'" in capsys.readouterr().err


def _readme_commands():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    return [b.strip() for b in blocks]


def test_readme_has_exactly_two_commands_and_ci_runs_both_verbatim_in_a_fresh_venv():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert all("-c constraints.txt" in c for c in cmds)  # the pinned, tested versions
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run reads the commands from README.md (never a copy that could drift) and runs both
    assert 'open("README.md")' in ci and '"${CMDS[0]}"' in ci and '"${CMDS[1]}"' in ci
    assert "python3 -m venv" in ci and "mktemp -d" in ci


def _run_main_job(folder: Path) -> None:
    """README command 1 after its install step (installed here already), in ``folder``."""
    main_cmd = _readme_commands()[0]
    steps = [s.strip() for s in main_cmd.split("&&")]
    assert steps[0].startswith("pip install")
    env = {k: v for k, v in os.environ.items() if k != "EDGEPOSE_MODEL_DIR"}  # only what the package ships
    env["XDG_CACHE_HOME"] = str(folder / ".cache")
    for step in steps[1:]:
        argv = shlex.split(step)
        assert argv[0] == "edgepose"
        proc = subprocess.run([sys.executable, "-m", "edgepose.cli.main", *argv[1:]], cwd=folder,
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.backend
def test_readme_main_job_runs_as_written_with_only_what_the_package_ships(tmp_path):
    _run_main_job(tmp_path)
    lines = (tmp_path / "runs" / "demo_astronaut.poses.jsonl").read_text().splitlines()
    assert len(lines) == 90
    assert sum(bool(json.loads(x)["poses"]) for x in lines) >= 85  # the astronaut is found
    assert (tmp_path / "runs" / "demo_astronaut.annotated.mp4").stat().st_size > 100_000


@pytest.mark.backend
def test_readme_python_example_runs_on_the_main_jobs_output(tmp_path, monkeypatch):
    _run_main_job(tmp_path)
    text = (REPO / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)\n```", text, re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["est"].model.name == "movenet-lightning-int8-onnx"
    assert namespace["result"].frame_index == 89  # every frame of the 90-frame demo went through
    assert namespace["score"] > 0.3


def test_the_readme_command_table_lists_every_subcommand():
    from edgepose.cli.main import _commands

    table = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `edgepose ")]
    missing = [m.NAME for m in _commands() if not any(line.startswith(f"| `edgepose {m.NAME}") and
                                                      line[len(f"| `edgepose {m.NAME}")] in " `" for line in table)]
    assert missing == []
