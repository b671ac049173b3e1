#!/usr/bin/env python3
"""PHP VM kinds and Wasmtime settings, side by side: native PHP against any number of wasm
variants of the same release, in one run, as ratios.

    .venv/bin/python bench/vm.py --src build-output/php/php-8.2.32/src \\
        CALL=build-output/php/php-8.2.32/bin/php.wasm \\
        SWITCH=/elsewhere/php.wasm \\
        "SWITCH, no epochs=/elsewhere/php.wasm+epoch_interruption=false"

A variant is LABEL=MODULE.wasm[+SETTING=VALUE...]. A SETTING is a wasmtime.Config attribute
(as in kiln.runner.ENGINE_SETTINGS, which it overrides) or `cranelift.FLAG` for a Cranelift
flag. Each variant is compiled once, in its own process, with its settings; then every round
runs native `php -n` and each variant once, in that order, so load on the machine hits them
alike. Each run is a fresh process that maps the precompiled code (Kiln's runner, in
process): the time is instantiation plus the script, as in bench/php.py.

One table per --script (median of --rounds, ratio to native and to the first variant) is
printed and replaces a section of docs/benchmarks.md (--section, default "VM and engine
variants") unless --no-docs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SECTION = "VM and engine variants"


def parse_variant(text: str) -> tuple[str, Path, dict]:
    label, sep, rest = text.partition("=")
    if not sep or not rest:
        raise SystemExit(f"bench/vm.py: variant {text!r} is not LABEL=MODULE.wasm[+SETTING=VALUE...]")
    module, *pairs = rest.split("+")
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"bench/vm.py: setting {pair!r} of {label!r} is not SETTING=VALUE")
        settings[key] = {"true": True, "false": False}.get(value.lower(),
                                                          int(value) if value.isdigit() else value)
    path = Path(module)
    if not path.is_file():
        raise SystemExit(f"bench/vm.py: {path} does not exist (variant {label!r})")
    return label, path, settings


def _engine_for(settings: dict):
    """Kiln's engine with the variant's settings over it (this worker process only)."""
    from kiln import runner
    cranelift = {k.removeprefix("cranelift."): v for k, v in settings.items() if k.startswith("cranelift.")}
    # Epoch checks are the engine's choice (engine_settings(flag)); the rest overrides the table.
    epochs = settings.get("epoch_interruption")
    runner.ENGINE_SETTINGS.update({k: v for k, v in settings.items()
                                   if not k.startswith("cranelift.") and k != "epoch_interruption"})
    if cranelift:
        import wasmtime
        config = wasmtime.Config()
        for name, value in runner.engine_settings(epochs).items():  # KILN_TIME_LIMITS unless given
            setattr(config, name, value)
        for name, value in cranelift.items():
            config.cranelift_flag_set(name, str(value).lower())
        runner._engines[bool(runner.engine_settings(epochs)["epoch_interruption"])] = wasmtime.Engine(config)
    return runner.make_engine(epochs)


def worker(ns) -> None:
    """One variant in this process: compile to ns.cache (if absent), or run the script once."""
    import wasmtime

    from kiln import atomic, runner
    settings = json.loads(ns.settings)
    engine = _engine_for(settings)
    if ns.worker == "compile":
        started = time.monotonic()
        data = wasmtime.Module.from_file(engine, ns.module).serialize()
        atomic.write_bytes(Path(ns.cache), data)
        print(json.dumps({"compile": time.monotonic() - started}))
        return
    epochs = bool(runner.engine_settings(settings.get("epoch_interruption"))["epoch_interruption"])
    module = runner.deserialize_file(ns.cache, epochs)  # on `engine`: _engine_for installed it
    zend = Path(ns.src) / "Zend"
    result = runner.run(module, ["php", f"/zend/{ns.script}"], preopens=[runner.Preopen(zend, "/zend", False)])
    if result.exit_code != 0:
        raise SystemExit(f"{ns.module} {ns.script} exited {result.exit_code}: {result.stderr[-300:]!r}")
    print(json.dumps({"seconds": result.duration}))


def _worker_call(mode: str, module: Path, settings: dict, cache: Path, src: Path, script: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--module", str(module),
                          "--settings", json.dumps(settings), "--cache", str(cache), "--src", str(src),
                          "--script", script], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench/vm.py: {mode} of {module} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(script: str, variants: list, native: list[float], runs: list[list[float]],
           compile_seconds: list[float]) -> str:
    """Three readings of the same runs: medians, same-round ratios (load that hits one round hits
    native and variants alike) and fastest runs (what the code can do when nothing interferes)."""
    base = statistics.median(native)
    first = statistics.median(runs[0])
    lines = [f"| variant | module | compile | median {script} | x native | x native, same round "
             f"| x native, fastest runs | x {variants[0][0]} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| native `php -n` | | | {base:.3f} s | 1.00 | | | |"]
    for (label, module, settings), seconds, compiled in zip(variants, runs, compile_seconds):
        median = statistics.median(seconds)
        same_round = statistics.median(v / n for v, n in zip(seconds, native))
        lines.append(f"| {label} | {module.stat().st_size / 1e6:.2f} MB | {compiled:.1f} s | {median:.3f} s "
                     f"| {median / base:.2f} | {same_round:.2f} | {min(seconds) / min(native):.2f} "
                     f"| {median / first:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="LABEL=MODULE.wasm[+SETTING=VALUE...]")
    parser.add_argument("--src", type=Path, help="the release's source tree (its Zend/ benchmarks)")
    parser.add_argument("--script", action="append", dest="scripts", metavar="SCRIPT",
                        help="a script in Zend/ (bench.php, micro_bench.php); repeat for several, "
                             "one table each (default bench.php)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--section", default=SECTION, help=f"the docs/benchmarks.md section to replace "
                                                           f"(default {SECTION!r})")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--worker", choices=["compile", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--settings", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        ns.script = ns.scripts[0]
        return worker(ns)
    if not ns.variants or ns.src is None:
        parser.error("give --src and at least one variant")
    scripts = ns.scripts or ["bench.php"]

    from kiln import compare, native as host_php
    php = host_php.binary("cli")
    variants = [parse_variant(text) for text in ns.variants]
    for script in scripts:
        if not (ns.src / "Zend" / script).is_file():
            raise SystemExit(f"bench/vm.py: {ns.src / 'Zend' / script} does not exist: give the release's "
                             "extracted tree as --src")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kiln-vm-bench-") as scratch:
        caches, compile_seconds = [], []
        for index, (label, module, settings) in enumerate(variants):
            cache = Path(scratch) / f"{index}.cwasm"
            print(f"compiling {label} ...", flush=True)
            compile_seconds.append(_worker_call("compile", module, settings, cache, ns.src, scripts[0])["compile"])
            caches.append(cache)
        native = {script: [] for script in scripts}
        runs = {script: [[] for _ in variants] for script in scripts}
        for round_ in range(ns.rounds):
            for script in scripts:
                native[script].append(compare._native(php, [str(ns.src / "Zend" / script)]))
                for index, (label, module, settings) in enumerate(variants):
                    runs[script][index].append(
                        _worker_call("run", module, settings, caches[index], ns.src, script)["seconds"])
                print(f"round {round_ + 1}/{ns.rounds} {script}: native {native[script][-1]:.3f} s, "
                      + ", ".join(f"{v[0]} {r[-1]:.3f} s" for v, r in zip(variants, runs[script])), flush=True)
    tables = [_table(script, variants, native[script], runs[script], compile_seconds) for script in scripts]
    text = "\n\n".join(tables)
    print(text)
    if ns.no_docs:
        return
    from graph import cpu_model, write_section
    body = (f"`bench/vm.py --rounds {ns.rounds} " + " ".join(f"--script {s}" for s in scripts)
            + f"`, started {started} on {cpu_model()} ({platform.machine()}, {os.cpu_count()} cores), "
            f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after. Native = `{php} -n` (PHP {host_php.version(php)}); "
            "each variant precompiled once with its settings, then run as a fresh process per round "
            "(instantiation + script, Kiln's runner), alternating with native, script by script. "
            "Settings after `+` override kiln.runner.ENGINE_SETTINGS.\n\n" + text)
    write_section(ns.section, body)
    print(f"docs/benchmarks.md: {ns.section} section updated")


if __name__ == "__main__":
    main()
