"""wasmedge: find or provision WasmEdge, the second runtime of the smoke checks (kiln/wasmedge.py).

Its answer (build-output/wasmedge.json) is a file_dep of every php_smoke task: WasmEdge
appearing, changing version or being turned off reruns the checks. A machine where it cannot be
had records why, and the checks say "not run" with that reason; delete wasmedge.json (or
`doit forget wasmedge`) to try again.
"""
from doit.tools import config_changed

from kiln import settings, wasmedge

from . import user_errors


@user_errors
def _provision():
    wasmedge.write_state()


def task_wasmedge():
    """Find WasmEdge, or make a Debian 13 root with it under KILN_CACHE (once)."""
    return {
        "actions": [_provision],
        "targets": [wasmedge.state_path()],
        "uptodate": [config_changed({"enabled": settings.wasmedge_enabled(),
                                     "root": str(wasmedge.root_dir())})],
        "doc": "WasmEdge for the smoke checks (the machine's, or a Debian 13 root's)",
        "clean": True,
    }
