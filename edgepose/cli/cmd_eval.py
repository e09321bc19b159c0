"""``edgepose eval``: accuracy on the evaluation sets (GT-box crops), one row per set + ALL + HARD.

The data root (the folder holding coco_mini/ and mmpose_mini/) comes from ``--data-root`` or the
environment variable ``EDGEPOSE_DATA``; in this project that is ``$EDGEPOSE_ASSETS/data``.
"""

from __future__ import annotations

import json

from edgepose.cli import _args

NAME = "eval"
HELP = "PCK@0.2 x torso, PCK@0.1 x bbox and OKS-AP of a model on the evaluation sets"


def add_arguments(p):
    from edgepose.eval.datasets import DATA_ENV, GROUPS, list_datasets

    p.add_argument("--model", required=True, help="a model card name (see 'edgepose models') or a "
                   ".onnx / .tflite file")
    p.add_argument("--card", help="the card to read a model file with, when it is not recognised")
    p.add_argument("--datasets", help="comma-separated sets or groups (default: all). Sets: "
                   f"{', '.join(list_datasets())}; groups: {', '.join(GROUPS)}")
    p.add_argument("--data-root", type=_args.existing_dir("data root"), help=f"folder holding coco_mini/ and mmpose_mini/ (default: ${DATA_ENV})")
    p.add_argument("--json", metavar="OUT", type=_args.output_file, help="write the report as JSON here")
    p.add_argument("--threads", type=_args.int_range(1), help="inference threads (default: the runtime's)")
    p.add_argument("--model-dir", type=_args.existing_dir("model folder"), help="an extra folder to search for model files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--crop-convention", choices=("index", "centre"), default="index",
                   help="pixel convention of the crops: 'index' (default) is the $EDGEPOSE_ASSETS/ASSETS.md "
                   "protocol behind the reference numbers; 'centre' is the runtime's")


def run(args) -> int:
    from edgepose.eval.datasets import resolve_data_root, resolve_names
    from edgepose.eval.runner import evaluate
    from edgepose.models import load_model

    names = resolve_names(args.datasets)  # fail on a bad name before loading the model
    root = resolve_data_root(args.data_root)
    with load_model(args.model, card=args.card, num_threads=args.threads,
                    model_dir=args.model_dir) as model:
        report = evaluate(model, datasets=names, root=root, progress=not args.no_progress,
                          crop=args.crop_convention)
    print(report.format_table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report.to_dict(), fh, indent=2)
        print(f"wrote {args.json}")
    return 0
