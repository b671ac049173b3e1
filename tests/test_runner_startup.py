"""What keeps `python -m kiln.runner` starting fast (docs/benchmarks.md, "Start-up")."""
import importlib.metadata
import os
import subprocess
import sys

from doit_run import ROOT
from kiln import runner


def test_the_wasmtime_version_is_what_the_package_metadata_says():
    # Read from the .dist-info folder beside the package (no importlib.metadata); the engine
    # fingerprint, hence every precompiled artifact, depends on it.
    assert runner.wasmtime_py_version() == importlib.metadata.version("wasmtime")


def test_importing_the_runner_leaves_gc_on_and_skips_package_metadata():
    probe = ("import gc, sys, kiln.runner; "
             "print(gc.isenabled(), 'importlib.metadata' in sys.modules, 'tempfile' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    assert out == ["True", "False", "False"]
