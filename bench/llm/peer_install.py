"""Each peer router from PyPI in its own virtual environment under .venv-peers/ (so their
dependencies never meet the project's or each other's).

    python bench/llm/peer_install.py          # install what is missing
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venv-peers"
# kind -> the pinned requirement (the versions bench/llm/PEERS.md describes)
PACKAGES = {
    "vllm-router": "vllm-router==0.1.17",
    "sglang-router": "sglang-router==0.3.2",
    "smg": "smg==1.13.0",
}


def bin_dir(kind: str) -> Path:
    """The bin/ directory of a peer's virtual environment."""
    return VENVS / kind / "bin"


def installed_version(kind: str) -> str | None:
    """The installed version of the peer's package, or None."""
    python = bin_dir(kind) / "python"
    if not python.exists():
        return None
    package = PACKAGES[kind].split("==")[0]
    done = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({package!r}))"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def missing(kind: str) -> str | None:
    """Why the peer cannot run from its venv (absent or another version), or None."""
    wanted = PACKAGES[kind].split("==")[1]
    found = installed_version(kind)
    if found == wanted:
        return None
    what = "not installed" if found is None else f"version {found} installed"
    return f"{kind} {wanted} is {what} (python bench/llm/peer_install.py)"


def install(kind: str) -> None:
    """Create the peer's venv and install its pinned package into it."""
    venv = VENVS / kind
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, PACKAGES[kind]], check=True)


def main() -> int:
    for kind in PACKAGES:
        if missing(kind):
            print(f"installing {PACKAGES[kind]} into {VENVS / kind}", flush=True)
            install(kind)
        print(f"{kind} {installed_version(kind)}: {bin_dir(kind)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
