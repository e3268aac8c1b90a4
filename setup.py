"""SERVICEPOOL_COMPILE=1 compiles the proxy's request path with mypyc into the wheel; the
Python modules ship too and are what runs without it (see servicepool_proxy/compiled.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from setuptools import setup

ext_modules = []
if os.environ.get("SERVICEPOOL_COMPILE") == "1":
    from mypyc.build import mypycify

    source = (Path(__file__).parent / "proxy/servicepool_proxy/compiled.py").read_text()
    modules = re.findall(r'"(proxy/servicepool_proxy/[\w/]+\.py)"', source)
    os.environ["MYPYPATH"] = "api"
    ext_modules = mypycify(
        ["--follow-imports=silent", *modules], opt_level="3", group_name="servicepool_compiled"
    )

setup(ext_modules=ext_modules)
