"""``edgepose models``: list the model cards and whether their files are found here."""

from __future__ import annotations

NAME = "models"
HELP = "list the model cards edgepose knows and where their files are"


def add_arguments(p):
    p.add_argument("--model-dir", help="an extra folder to search for model files")


def run(args) -> int:
    from edgepose.errors import ModelLoadError
    from edgepose.models import find_file, get_card, list_models

    for name in list_models():
        spec = get_card(name)
        try:
            where = str(find_file(spec.files[0], args.model_dir))
        except ModelLoadError:
            where = "(not found: run 'edgepose fetch' or set EDGEPOSE_MODEL_DIR)"
        print(f"{name:26s} {spec.description}\n{'':26s} {where}")
    return 0
