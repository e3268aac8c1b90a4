"""The chart's values table in its README is the one its values.yaml's `# --` comments give."""

from __future__ import annotations

from servicepool_dev import valuesref


def test_the_values_table_is_current() -> None:
    page = (valuesref.CHART / "README.md").read_text()
    assert valuesref.replace_in(page) == page, "run `make docs`, commit charts/servicepool/"


def test_every_value_is_documented() -> None:
    assert valuesref.undocumented((valuesref.CHART / "values.yaml").read_text()) == []


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
    fresh = valuesref.replace_in(stale)
    assert "`gone`" not in fresh and "| `replicas` | int | `2` |" in fresh
    assert fresh.startswith("before\n") and fresh.endswith("\nafter\n")
