"""``edgepose models``: list the model cards and whether their files are found here."""

from __future__ import annotations

from edgepose.cli import _args

NAME = "models"
HELP = "list the model cards edgepose knows and where their files are"


def add_arguments(p):
    p.add_argument("--model-dir", type=_args.existing_dir("model folder"), help="an extra folder to search for model files")


def run(args) -> int:
    from edgepose.errors import ModelLoadError
    from edgepose.models import find_file, get_card, how_to_get, list_models

    for name in list_models():
        spec = get_card(name)
        try:
            where = str(find_file(spec.files[0], args.model_dir))
        except ModelLoadError:
            where = f"(not found: {how_to_get(spec.files[0])})"
            missing = [f for f in spec.files[1:] if _missing(f, args.model_dir)]
            if missing:
                where += f"; also needs {', '.join(missing)}"
        print(f"{name:26s} {spec.description}\n{'':26s} {where}")
    return 0


def _missing(filename, model_dir) -> bool:
    from edgepose.errors import ModelLoadError
    from edgepose.models import find_file

    try:
        find_file(filename, model_dir)
        return False
    except ModelLoadError:
        return True
