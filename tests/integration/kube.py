"""Find a Kubernetes cluster for the integration tests: $KUBECONFIG, or a local control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLUSTER_SCRIPTS = Path(__file__).resolve().parents[2] / "e2e" / "cluster"


def start_cluster(workdir: Path) -> str:
    """Bring up a local control plane under workdir; return its kubeconfig path.

    up.sh starts the version $SERVICEPOOL_K8S_VERSION names: the current release when unset,
    or 1.20 (v1.20.2).
    """
    result = subprocess.run(
        [str(CLUSTER_SCRIPTS / "up.sh"), str(workdir)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"e2e/cluster/up.sh failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def stop_cluster(workdir: Path) -> None:
    """Stop the control plane under workdir and remove its state."""
    subprocess.run([str(CLUSTER_SCRIPTS / "down.sh"), str(workdir)], check=False, timeout=60)


@contextmanager
def cluster_kubeconfig() -> Iterator[str]:
    """$KUBECONFIG when set (any cluster), else a local control plane for the duration."""
    external = os.environ.get("KUBECONFIG")
    if external:
        yield external
        return
    workdir = Path(tempfile.mkdtemp(prefix="servicepool-cluster-"))
    try:
        yield start_cluster(workdir / "plane")
    finally:
        stop_cluster(workdir / "plane")
        shutil.rmtree(workdir, ignore_errors=True)
