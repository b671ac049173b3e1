"""The build chain for real: both testable releases, php_builds once per test run by doit,
run in Wasmtime, and doit's own reports read back to prove what reran and what did not.

Order matters in this module (pytest keeps file order): the edit tests restore what they
change and leave the tree php_builds, so later modules find it up to date.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from doit_run import doit, executed
from kiln import recipe, runner, settings, wasmfile
from kiln.layout import Build

pytestmark = pytest.mark.slow

PHP = recipe.language("php")
TESTABLE = list(PHP.testable)
TARGETS = [f"php:{v}" for v in TESTABLE]
BUILDS = {v: Build("php", v, "default") for v in TESTABLE}


def actions_ran(tasks):
    """Executed tasks, minus the group tasks that only point at others."""
    return {name for name in executed(tasks) if not name.startswith("php:")}


@pytest.mark.parametrize("version", TESTABLE)
def test_the_module_prints_its_version_in_wasmtime(php_builds, version):
    for aot in (False, True):
        result = runner.run(php_builds[version].module("php", aot=aot), ["php", "-r", "echo PHP_VERSION;"])
        assert (result.exit_code, result.stdout.decode()) == (0, version)


@pytest.mark.parametrize("version", TESTABLE)
def test_the_modules_name_no_folder_of_this_machine(php_builds, version):
    """Another checkout (or CI) must build the same bytes: neither the project's folder nor
    the toolchain's (the venv's zig) may end up in a module, e.g. in phpinfo's configure line."""
    folders = {str(settings.ROOT), sys.prefix, str(Path(sys.executable).resolve().parent.parent)}
    for name in PHP.outputs:
        data = php_builds[version].module(name).read_bytes()
        assert [f for f in folders if f.encode() in data] == [], name


@pytest.mark.parametrize("version", TESTABLE)
def test_the_modules_export_only_what_a_wasi_host_calls(php_builds, version):
    """No -export-dynamic (WASI has no dlopen): the linker keeps only what _start reaches."""
    for name in PHP.outputs:
        data = php_builds[version].module(name).read_bytes()
        assert sorted(n for n, _, _ in wasmfile.exports(data)) == ["_start", "memory"], name


@pytest.mark.parametrize("version", TESTABLE)
def test_every_smoke_check_passed(php_builds, version):
    report = json.loads(php_builds[version].smoke_report.read_text())
    assert report["passed"] is True
    names = {c["name"] for c in report["checks"] if c["passed"]}
    assert {"version", "demo-page", "fatal-error", "cgi-get", "cgi-post"} <= names
    assert ("fiber" in names) == version.startswith("8.")


def test_a_second_run_executes_nothing(php_builds):
    # How fast a no-op is belongs to bench/graph.py, not to a timed assertion here.
    _, tasks, _, _ = doit(*TARGETS)
    assert tasks and actions_ran(tasks) == set()


def test_every_release_of_the_recipe_is_in_the_graph():
    from doit_run import plain
    listing = plain("list", "--all").stdout
    for version in PHP.versions:
        assert f"php:{version} " in listing
        assert f"php_make:{version} " in listing


def test_editing_an_8x_patch_rebuilds_only_8x_from_the_patch_step(php_builds):
    # A patch the testable 8.x default build has and 7.4.33's lacks (whatever its variants say).
    eight_only = next(p for p in PHP.patches
                      if p.when.satisfied_by("8.2.32", ()) and not p.when.satisfied_by("7.4.33", ()))
    original = eight_only.file.read_bytes()
    try:
        eight_only.file.write_bytes(b"(a note added by the test suite)\n" + original)
        _, tasks, _, _ = doit(*TARGETS)
    finally:
        eight_only.file.write_bytes(original)
    ran = actions_ran(tasks)
    eights = [v for v in TESTABLE if v.startswith("8.")]
    assert {f"php_{stage}:{v}" for stage in ("patch", "make") for v in eights} <= ran
    # The patch touches a C source only: configure's output cannot change, so it is not rerun.
    assert not any(name.startswith("php_configure:") for name in ran), ran
    assert not any(name.endswith(":7.4.33") for name in ran), ran
    assert not any(name.startswith(("php_download", "php_extract")) for name in ran), ran
    # Back to the committed patch: rebuilt again, and then up to date.
    doit(*TARGETS)
    _, tasks, _, _ = doit(*TARGETS)
    assert actions_ran(tasks) == set()


def test_editing_a_smoke_fixture_reruns_smoke_only(php_builds):
    fixture = PHP.folder / "smoke" / "scripts" / "exit3.php"
    original = fixture.read_bytes()
    try:
        fixture.write_bytes(original + b"// edited by the test suite\n")
        _, tasks, _, _ = doit(*TARGETS)
    finally:
        fixture.write_bytes(original)
    assert actions_ran(tasks) == {f"php_smoke:{v}" for v in TESTABLE}
    doit(*TARGETS)


def test_deleting_an_artifact_rebuilds_just_what_makes_it(php_builds):
    victim = php_builds["8.2.32"].module("php", aot=True)
    victim.unlink()
    _, tasks, _, _ = doit(*TARGETS)
    assert "php_aot:8.2.32" in actions_ran(tasks)
    # Only its producer, and the artifact's own consumers should its bytes differ.
    assert actions_ran(tasks) <= {"php_aot:8.2.32", "php_smoke:8.2.32", "php_image:8.2.32-cli-aot",
                                  "php_image:8.2.32"}
    assert victim.is_file()


def test_changing_toolchain_flags_would_rebuild_every_compiled_output(php_builds):
    from doit_run import plain
    for version in TESTABLE:
        changed = plain("info", f"php_configure:{version}", env={"KILN_CFLAGS": "-DKILN_PROBE=1"}).stdout
        assert "status     : run" in changed and "config_changed" in changed
        same = plain("info", f"php_configure:{version}").stdout
        assert "status     : up-to-date" in same
        untouched = plain("info", f"php_patch:{version}", env={"KILN_CFLAGS": "-DKILN_PROBE=1"}).stdout
        assert "status     : up-to-date" in untouched


def test_two_jobs_rebuild_the_matrix_safely(php_builds):
    """`doit -n 2` (doit's default process pool) from the patch step on, both releases at once:
    every stage runs, the modules come out byte-identical, and the store says all is done."""
    from doit_run import plain
    modules = [BUILDS[v].module(m, aot=aot) for v in TESTABLE for m in PHP.outputs for aot in (False, True)]
    before = {m: m.read_bytes() for m in modules}
    stages = [f"php_{s}:{v}" for v in TESTABLE for s in ("patch", "configure", "make", "collect", "aot", "smoke")]
    assert plain("forget", *stages).returncode == 0
    _, tasks, output, _ = doit("-n", "2", *TARGETS)
    assert set(stages) <= actions_ran(tasks), output[-3000:]
    changed = [str(m) for m in modules if m.read_bytes() != before[m]]
    assert changed == [], changed
    _, tasks, _, _ = doit(*TARGETS)
    assert actions_ran(tasks) == set()


def test_a_missing_toolchain_fails_with_one_line(tmp_path):
    from doit_run import plain
    result = plain("php_configure:8.2.32", env={"WASI_SDK_PATH": str(tmp_path / "no-sdk")})
    assert result.returncode != 0
    assert f"WASI_SDK_PATH={tmp_path / 'no-sdk'} has no bin/clang" in result.stdout + result.stderr


def test_two_clean_builds_in_different_folders_are_byte_identical(php_builds):
    """SOURCE_DATE_EPOCH, no build paths, a pinned uname: the graph's own check must pass."""
    _, tasks, output, _ = doit("php_reproduce:8.2.32", env={"KILN_IMAGES": "off"})
    # Up to date on a second run in the same build-output: its report then stands for the
    # same inputs (on a fresh machine, CI's case, it runs).
    assert tasks["php_reproduce:8.2.32"] in ("success", "up-to-date"), output[-3000:]
    report = json.loads((php_builds["8.2.32"].root / "reproduce.json").read_text())
    assert all(entry["identical"] for entry in report.values()), report
