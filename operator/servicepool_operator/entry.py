"""The `servicepool-operator` console script: says which extra is missing before any import
of kopf or kubernetes can fail with a traceback."""

from __future__ import annotations

import importlib
import sys

REQUIRED = ("kopf", "kubernetes")
INSTALL_HINT = "pip install 'servicepool[operator]'"


def missing_modules() -> list[str]:
    """The operator's own dependencies that cannot be imported here."""
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    """Run the operator, or exit 2 with one line when its extra is not installed."""
    try:
        from .cli import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in REQUIRED:
            raise
        missing = missing_modules() or [exc.name or ""]
        print(
            f"servicepool-operator: the 'operator' extra is not installed "
            f"({', '.join(missing)} missing): {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
