"""Interpreter configurations and the probe's environment (diagnose/_plan.py, diagnose/_launch.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ftpipe
from ftpipe.diagnose._launch import _pythonpath

FIND = """
import importlib.util, json, sys
import ftpipe
print(json.dumps({"ftpipe": ftpipe.__file__, "numpy": importlib.util.find_spec("numpy") is not None}))
"""


def test_probes_get_ftpipe_alone_on_their_path_not_its_site_packages() -> None:
    """Probes imported another interpreter's packages from this one's site-packages.

    ``_pythonpath`` put the parent of ftpipe's package first on the probe's
    ``PYTHONPATH``: for an installed ftpipe that is site-packages, so a probe on
    another interpreter (3.13t probing a 3.11 install, say) imported this
    interpreter's numpy, built for another ABI, and failed or measured the wrong one.
    """
    entries = _pythonpath().split(os.pathsep)
    first = Path(entries[0])
    assert os.listdir(first) == ["ftpipe"], first
    assert (first / "ftpipe").resolve() == Path(ftpipe.__file__).resolve().parent
    assert not any((Path(e) / "numpy").exists() for e in entries), entries
    # Another interpreter, here one without site-packages (-S): ftpipe imports, from
    # that directory, and this interpreter's numpy is nowhere on its path.
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    done = subprocess.run(
        [sys.executable, "-S", "-c", FIND],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout)
    assert found == {"ftpipe": str(first / "ftpipe" / "__init__.py"), "numpy": False}
