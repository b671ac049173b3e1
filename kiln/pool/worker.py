"""One pool worker: an OS process that keeps one php-cgi.wasm instance running PHP's FastCGI loop.

The supervisor starts `python -m kiln.pool.worker CONFIG.json [--cpu N]` with the instance's request
stream on this process's stdin and its answers on stdout; PHP's own loop (patch 0013) reads
request after request until it has served PHP_FCGI_MAX_REQUESTS or the stream ends, then the
process exits with PHP's status. Nothing here times requests: the supervisor kills this
process when a request outlives its limit, so the module needs no epoch checks to be stopped.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kiln import runner


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--cpu":
        # Before Wasmtime starts its threads: they inherit it.
        os.sched_setaffinity(0, {int(argv[2])})
    config = json.loads(Path(argv[0]).read_text())
    preopens = [runner.Preopen(Path(p["host"]), p["guest"], p["writable"]) for p in config["preopens"]]
    env = {"PHP_FCGI_STDIO": "1", "PHP_FCGI_MAX_REQUESTS": str(config["max_requests"]),
           **config["env"]}
    # A .wasm is compiled once into KILN_CACHE, not by every worker that starts.
    module = runner.load_cached(config["module"])
    result = runner.run(module, ["php-cgi", *config["args"]], env=env,
                        preopens=preopens, inherit_stdio=True,
                        memory_limit=config["memory_limit"])
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
