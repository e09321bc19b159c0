"""Argument types for the subcommands: every bad value is one clear line, before any model loads.

Each factory returns an argparse ``type=`` callable. A bad value raises
``argparse.ArgumentTypeError``, which argparse prints as ``edgepose CMD: error: argument --opt: ...``
with exit code 2: the message names the value, the valid values and the fix. Checks that depend on
several options (a busy port, an extra that is not installed) are functions the command calls first
thing in ``run`` and raise :class:`~edgepose.errors.ConfigError` (also exit 2).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
from pathlib import Path

from edgepose.errors import ConfigError


def int_range(low: int, high: int | None = None, *, what: str = "") -> "callable":
    """An int in ``[low, high]`` (``high`` None: no upper bound)."""
    span = f">= {low}" if high is None else f"in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give an integer {span}"
                                             + (f" ({what})" if what else "")) from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; give an integer {span}"
                                             + (f" ({what})" if what else ""))
        return value

    parse.__name__ = "int"
    return parse


def float_range(low: float, high: float | None = None, *, low_open: bool = False) -> "callable":
    """A finite float ``>= low`` (``> low`` with ``low_open``) and ``<= high``."""
    span = (f"> {low:g}" if low_open else f">= {low:g}") + ("" if high is None else f" and <= {high:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number {span}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < low or (low_open and value == low) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a number {span}")
        return value

    parse.__name__ = "float"
    return parse


def port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    return int_range(0, 65535, what="a TCP port; 0 picks a free one")(text)


def host(text: str) -> str:
    """A bind address: an IPv4 / IPv6 literal or a name this machine resolves."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if text and all(part.isdigit() for part in text.split(".")):  # 256.1.1.1: looks like IPv4, is not
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid IPv4 address (each part 0-255); "
                                         "use e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    try:
        socket.getaddrinfo(text, None)
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a host name this machine "
                                         "resolves; use e.g. 127.0.0.1 or 0.0.0.0") from None
    return text


def input_file(*suffixes: str, what: str = "file") -> "callable":
    """An existing, readable regular file (with one of ``suffixes`` when given)."""

    def parse(text: str) -> str:
        p = Path(text)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{what} {text!r} does not exist; check the path")
        if not p.is_file():
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not a file (a folder?); pass a file path")
        if not os.access(p, os.R_OK):
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not readable; check its permissions")
        if suffixes and p.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{what} {text!r} must end in {' or '.join(suffixes)}")
        return text

    parse.__name__ = "file"
    return parse


def _content_file(what: str, read, problem: str, fix: str, name: str) -> "callable":
    """An existing file that ``read(path)`` accepts; its exception is reported as ``problem``."""
    exists = input_file(what=what)

    def parse(text: str) -> str:
        exists(text)
        try:
            read(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"{what} {text!r} {problem} ({exc}); {fix}") from None
        return text

    parse.__name__ = name
    return parse


def json_file(what: str = "JSON file") -> "callable":
    """An existing file that parses as JSON."""

    def read(path):
        with open(path, encoding="utf-8") as fh:
            json.load(fh)

    return _content_file(what, read, "is not valid JSON", "pass a JSON file", "json")


def text_file(what: str = "file") -> "callable":
    """An existing file that is UTF-8 text (a YAML suite, a profile)."""
    return _content_file(what, lambda path: Path(path).read_text(encoding="utf-8"),
                         "is not a UTF-8 text file (binary?)", "pass the YAML file", "text file")


def _writable_parent(p: Path) -> Path | None:
    """The nearest existing ancestor of ``p`` when it is not a writable folder, else None."""
    q = p.absolute().parent
    while not q.exists():
        q = q.parent
    return None if q.is_dir() and os.access(q, os.W_OK) else q


def output_dir(text: str) -> str:
    """A folder to write into: existing folder or creatable; never an existing file."""
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is a file, not a folder; pass a folder "
                                         "(it is created if missing)")
    if p.is_dir() and not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {text!r} is not writable; pass another folder")
    bad = None if p.is_dir() else _writable_parent(p)
    if bad is not None:
        raise argparse.ArgumentTypeError(f"cannot create folder {text!r}: {str(bad)!r} is not a writable folder")
    return text


def output_file(text: str) -> str:
    """A file to write: not a folder, its folder exists or can be made and is writable."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; pass a file name to write")
    if p.exists() and not os.access(p, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not writable; pass another file name")
    bad = None if p.exists() else _writable_parent(p)
    if bad is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(bad)!r} is not a writable folder")
    return text


def check_port_free(host_: str, port_: int, option: str = "--port") -> None:
    """Refuse a port another process listens on, before models load (0 is always free)."""
    if port_ == 0:
        return
    family = socket.AF_INET6 if ":" in host_ else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind((host_, port_))
        except OSError as exc:
            raise ConfigError(f"{option} {port_}: cannot listen on {host_}:{port_} ({exc.strerror or exc}); "
                              "another program uses it or the address is not on this machine. Pick another "
                              f"port, or {option} 0 for any free one") from None


def check_extra(module: str, extra: str, package: str, feature: str) -> None:
    """Refuse a command whose extra is not installed, naming the exact pip line."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{feature} needs {package}, which is not installed. Install it with: "
                          f"pip install 'edgepose[{extra}]'")


def existing_dir(what: str = "folder") -> "callable":
    """An existing folder."""

    def parse(text: str) -> str:
        p = Path(text)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{what} {text!r} does not exist; check the path")
        if not p.is_dir():
            raise argparse.ArgumentTypeError(f"{what} {text!r} is a file, not a folder; pass the folder")
        return text

    parse.__name__ = "folder"
    return parse


def int_list(low: int = 0) -> "callable":
    """Comma-separated integers ``>= low`` ('' gives an empty tuple)."""

    def parse(text: str) -> tuple[int, ...]:
        out = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if not part.lstrip("-").isdigit() or int(part) < low:
                raise argparse.ArgumentTypeError(f"{part!r} in {text!r} is not an integer >= {low}; give "
                                                 f"comma-separated integers, e.g. {low},{low + 2}")
            out.append(int(part))
        return tuple(out)

    parse.__name__ = "int list"
    return parse
