"""Every module of the FHIR plugin imports on its own, first, in a fresh interpreter.

The record modules and ``resources`` import each other; a cycle that resolves only in one order made
``pytest tests/vendors`` fail to collect while the whole suite passed (another test imported
``resources`` first). Plugin authors import ``bridge.plugins.fhir.vendorkit`` and friends directly.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bridge.plugins.fhir as fhir_plugin

MODULES = sorted(m.name for m in pkgutil.iter_modules(fhir_plugin.__path__))


def test_each_fhir_module_imports_first_in_a_fresh_interpreter():
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'bridge' or m.startswith('bridge.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module('bridge.plugins.fhir.' + name)\n"
        "    except ImportError as error:\n"
        "        failed.append(f'{name}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"modules that fail when imported first:\n{result.stdout}"
    assert len(MODULES) > 20
