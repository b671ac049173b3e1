"""aot: precompile each module for Wasmtime (and WasmEdge, when wasmedgec is installed).

A precompiled artifact only loads into the engine version and settings it was
made for, so the engine fingerprint is this stage's tracked input. The bin/ artifacts are
wasmtime-py's; the Wasmtime command line's (kiln/wasmtime_cli.py) live in KILN_CACHE, keyed on
the module's content, and are filled here too so a first `kiln run` or pool start need not
compile (they are compiled on demand wherever missing, so they are not this task's targets).
"""
import shutil
import subprocess

from doit.tools import config_changed

from kiln import atomic, runner, settings, wasmtime_cli
from kiln.layout import Build

from . import builds, command_line_only, php, user_errors


@user_errors
def _precompile(build: Build, modules: list[str], wasmedgec: str | None):
    for name in modules:
        target = runner.precompile(build.module(name), build.module(name, aot=True))
        print(f"  {target}: {target.stat().st_size / 1e6:.1f} MB (engine {runner.engine_fingerprint()})")
        if settings.engine() != "in-process" and wasmtime_cli.available():
            cli = wasmtime_cli.artifact(target)
            print(f"  {cli}: the Wasmtime command line's ({wasmtime_cli.fingerprint()})")
    if wasmedgec is None:
        print("  wasmedgec is not on PATH: WasmEdge AOT outputs skipped")
        return
    for name in modules:
        with atomic.atomic_path(build.bin / f"{name}-wasmedge-aot") as tmp:
            subprocess.run([wasmedgec, "--enable-all", "--optimize", "3",
                            str(build.module(name)), str(tmp)], check=True)


@user_errors
def _precompile_command_line(build: Build, modules: list[str]):
    for name in modules:
        cli = wasmtime_cli.compiled(build.module(name))
        print(f"  {cli}: the Wasmtime command line's ({wasmtime_cli.fingerprint()}); no wasmtime-py or "
              "WasmEdge artifact: this build runs on the command line only")


def task_php_aot():
    """Precompile php.wasm and php-cgi.wasm into .cwasm artifacts for this Wasmtime."""
    modules = list(php().outputs)
    wasmedgec = shutil.which("wasmedgec")
    for build in builds():
        if command_line_only(build):
            # Stack switching (+fibers): only the command line's artifacts, in KILN_CACHE.
            yield {
                "name": build.id,
                "actions": [(_precompile_command_line, [build, modules])],
                "file_dep": [build.module(m) for m in modules],
                "uptodate": [config_changed({"engine": wasmtime_cli.fingerprint()})],
                "doc": f"precompile {build.id} (command line only)",
            }
            continue
        targets = [build.module(m, aot=True) for m in modules]
        if wasmedgec:
            targets += [build.bin / f"{m}-wasmedge-aot" for m in modules]
        yield {
            "name": build.id,
            "actions": [(_precompile, [build, modules, wasmedgec])],
            "file_dep": [build.module(m) for m in modules],
            "targets": targets,
            "uptodate": [config_changed({"engine": runner.engine_fingerprint(),
                                         "wasmedgec": bool(wasmedgec)})],
            "doc": f"precompile {build.id}",
            "clean": True,
        }
