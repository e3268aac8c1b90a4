"""The `servicepool-operator` console script without its extra: one line, exit status 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY_POINT = shutil.which("servicepool-operator", path=os.path.dirname(sys.executable))


def run_operator(
    *args: str, blocked: tuple[str, ...], tmp_path: Path
) -> subprocess.CompletedProcess:
    """The installed console script, with each `blocked` module failing to import as an
    absent package does."""
    assert ENTRY_POINT, "the servicepool-operator console script is not installed"
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    for name in blocked:
        (shadow / f"{name}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    return subprocess.run([ENTRY_POINT, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("blocked", [("kopf",), ("kubernetes",), ("kopf", "kubernetes")])
def test_the_operator_without_its_extra_names_the_extra_in_one_line_and_exits_2(
    tmp_path: Path, blocked: tuple[str, ...]
) -> None:
    result = run_operator("--all-namespaces", blocked=blocked, tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'servicepool[operator]'" in lines[0]
    assert "Traceback" not in result.stderr
    for name in blocked:
        assert name in lines[0]


def test_the_operator_with_its_extra_reaches_its_own_command_line(tmp_path: Path) -> None:
    result = run_operator("--help", blocked=(), tmp_path=tmp_path)
    assert result.returncode == 0
    assert "--leader-election-namespace" in result.stdout
