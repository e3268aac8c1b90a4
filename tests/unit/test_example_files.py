"""Every ServicePool in examples/ is valid against the API model (the e2e tier applies them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servicepool_api.loader import parse_pool

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_pool_parses(path: Path) -> None:
    pools = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "ServicePool"]
    assert pools
    for document in pools:
        parse_pool(document)
