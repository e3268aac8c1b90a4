"""Sections of the docs generated from the code: text between a begin and an end marker,
printed or rewritten in place (`make docs`; a unit test fails when one is stale)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def replace_between(text: str, begin: str, end: str, section: str) -> str:
    """`text` with everything from `begin` to `end` (markers included) replaced by `section`."""
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + section + text[stop:]


def main(prog: str, render: Callable[[], str], default: Path, argv: list[str] | None) -> int:
    """Print the section, or with --write [FILE] replace it in FILE (`default` if none)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--write", metavar="FILE", type=Path, nargs="?", const=default)
    args = parser.parse_args(argv)
    if args.write is None:
        print(render())
        return 0
    section = render()
    begin, end = section.splitlines()[0], section.splitlines()[-1]
    args.write.write_text(replace_between(args.write.read_text(), begin, end, section))
    return 0
