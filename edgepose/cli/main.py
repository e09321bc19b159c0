"""``edgepose`` entry point. Subcommands live in ``edgepose/cli/cmd_*.py``.

Each such module defines ``NAME`` (the subcommand, e.g. ``"eval-video"``), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are found by listing the package,
so adding a subcommand never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from edgepose.errors import EdgePoseError
from edgepose.version import __version__


def _commands():
    import edgepose.cli as pkg

    mods = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"edgepose.cli.{info.name}"))
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgepose",
        description="Edge deployment SDK for video human pose estimation.",
    )
    p.add_argument("--version", action="version", version=f"edgepose {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (and show tracebacks)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _commands():
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except EdgePoseError as exc:
        print(f"edgepose {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgepose {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edgepose models | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file or socket the user named: one line, no traceback
        print(f"edgepose {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line by default, the traceback with --verbose
        if args.verbose:
            raise
        print(f"edgepose {args.command}: internal error: {type(exc).__name__}: {exc}. This is a bug in edgepose; "
              "rerun with --verbose for the traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
