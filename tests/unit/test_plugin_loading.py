"""Airflow's plugin manager must not import the library a second time under top-level names.

It imports every ``.py`` under ``plugins/`` as a module named after the file, so without
``plugins/.airflowignore`` ``identity_sync/config.py`` would also live in ``sys.modules``
as ``config`` (a second copy, and a shadow over any library of that name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devtools.local_airflow import PROJECT_ROOT

PROBE = """
import json, sys
from pathlib import Path
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
import identity_sync.sync, identity_sync.backfill_steps  # what the DAG files import
library = Path(sys.argv[1]).resolve()
by_file = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if path and Path(path).resolve().is_relative_to(library):
        by_file.setdefault(str(Path(path).resolve().relative_to(library)), []).append(name)
print(json.dumps(by_file))
"""


def test_each_library_module_is_imported_once_under_a_real_plugin_manager(tmp_path):
    library = PROJECT_ROOT / "plugins" / "identity_sync"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": f"{PROJECT_ROOT / 'plugins'}{os.pathsep}{PROJECT_ROOT}",
    }
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(library)], env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    by_file = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "sync.py" in by_file and "config.py" in by_file  # the probe saw the library at all
    twice = {path: names for path, names in by_file.items() if len(names) != 1}
    assert twice == {}, f"library modules imported under several names: {twice}"
    assert all(name.startswith("identity_sync") for names in by_file.values() for name in names)
