"""One pool worker: an OS process that keeps one php-cgi.wasm instance running PHP's FastCGI loop.

The supervisor starts `python -m kiln.pool.worker CONFIG.json [--cpu N]` with the instance's request
stream on this process's stdin and its answers on stdout; PHP's own loop (patch 0013) reads
request after request until it has served PHP_FCGI_MAX_REQUESTS or the stream ends, then the
process exits with PHP's status. Nothing here times requests: the supervisor kills this
process when a request outlives its limit, so the module needs no epoch checks to be stopped.

When the supervisor found the Wasmtime command line able to run the module (CONFIG's
"cli_artifact"), this process pins itself, gives up writing outside the writable grants
(kiln/landlock.py) and becomes `wasmtime run`: no Python is left between the supervisor and the
guest, and WASI's file-system calls run on the guest's own thread (docs/benchmarks.md, "WASI
file-system calls"). Otherwise it runs the instance in process on wasmtime-py, as before.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kiln.engine import Preopen


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--cpu":
        # Before Wasmtime starts its threads: they inherit it (and so does an exec'd wasmtime).
        os.sched_setaffinity(0, {int(argv[2])})
    config = json.loads(Path(argv[0]).read_text())
    preopens = [Preopen(Path(p["host"]), p["guest"], p["writable"]) for p in config["preopens"]]
    env = {"PHP_FCGI_STDIO": "1", "PHP_FCGI_MAX_REQUESTS": str(config["max_requests"]),
           **config["env"]}
    argv = ["php-cgi", *config["args"]]
    if config.get("cli_artifact"):
        from kiln import wasmtime_cli

        command = wasmtime_cli.command(Path(config["cli_artifact"]), argv, env, preopens,
                                       config["memory_limit"])
        wasmtime_cli.confine(preopens)
        sys.stdout.flush()
        os.execve(command[0], command, wasmtime_cli.engine_env())
    from kiln import runner

    # A .wasm is compiled once into KILN_CACHE, not by every worker that starts.
    module = runner.load_cached(config["module"])
    result = runner.run(module, argv, env=env, preopens=preopens, inherit_stdio=True,
                        memory_limit=config["memory_limit"])
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
