"""The proxy's flags table in docs/proxy.md is the one its parser gives."""

from __future__ import annotations

from pathlib import Path

from servicepool_api.contract import build_parser
from servicepool_dev import flagref

ROOT = Path(__file__).resolve().parents[2]


def test_the_flags_table_is_current() -> None:
    page = (ROOT / "docs" / "proxy.md").read_text()
    assert flagref.replace_in(page) == page, "run `make docs`, commit docs/"


def test_every_flag_has_a_row_and_a_help_text() -> None:
    table = flagref.render()
    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert f"| `{action.option_strings[-1]}" in table
            assert action.help, f"{action.option_strings[-1]} has no help text"


def test_a_stale_table_is_replaced() -> None:
    stale = f"before\n{flagref.BEGIN}\n| `--gone` | | |\n{flagref.END}\nafter\n"
    fresh = flagref.replace_in(stale)
    assert "--gone" not in fresh and "`--pool FILE`" in fresh
    assert fresh.startswith("before\n") and fresh.endswith("\nafter\n")
