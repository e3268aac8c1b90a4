"""The chart's values table in its README is the one its values.yaml's `# --` comments give."""

from __future__ import annotations

from pathlib import Path

from servicepool_dev import valuesref

# The checkout's chart: an installed (non-editable) servicepool_dev sits outside the checkout.
CHART = Path(__file__).resolve().parents[2] / "charts" / "servicepool"


def test_the_values_table_is_current() -> None:
    page = (CHART / "README.md").read_text()
    assert valuesref.replace_in(page, CHART / "values.yaml") == page, (
        "run `make docs`, commit charts/servicepool/"
    )


def test_every_value_is_documented() -> None:
    assert valuesref.undocumented((CHART / "values.yaml").read_text()) == []


def test_a_comment_documents_the_key_under_it_and_its_whole_value() -> None:
    text = (
        "# A plain comment is not documentation.\n"
        "image:\n"
        "  # -- Where the image\n"
        "  # comes from.\n"
        "  repository: example/sp\n"
        "  tag: ''\n"
        "# -- Pod resources.\n"
        "resources:\n"
        "  requests: {cpu: 50m}\n"
    )
    rows = valuesref.rows(text)
    assert [(r.key, r.value, r.description) for r in rows] == [
        ("image.repository", "example/sp", "Where the image comes from."),
        ("resources", {"requests": {"cpu": "50m"}}, "Pod resources."),
    ]
    assert valuesref.undocumented(text) == ["image.tag"]


def test_a_stale_table_is_replaced() -> None:
    stale = f"before\n{valuesref.BEGIN}\n| `gone` | | | |\n{valuesref.END}\nafter\n"
    fresh = valuesref.replace_in(stale, CHART / "values.yaml")
    assert "`gone`" not in fresh and "| `replicas` | int | `2` |" in fresh
    assert fresh.startswith("before\n") and fresh.endswith("\nafter\n")
