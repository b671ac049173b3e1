"""The optimized modules (kiln/optimize.py, tasks/optimize.py): export trimming, wasm-opt's
flags and options, a real wasm-opt run on a small module, and (slow) PHP 8.2.32's small
flavour under budget."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kiln import optimize, runner, toolchain, wasmfile
from kiln.errors import KilnError

# The target for php.wasm, met by the small flavour (-Oz) through php_optimize
# (docs/images.md, "Optimized modules").
PHP_BUDGET = 3_500_000

SOURCE = r"""
#include <stdio.h>
__attribute__((export_name("spare"))) int spare(int x) { return x * 3 + 1; }
int main(void) { puts("hello"); return 7; }
"""


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    folder = tmp_path_factory.mktemp("opt")
    (folder / "hello.c").write_text(SOURCE)
    module = folder / "hello.wasm"
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2",
                    toolchain.WASM_FEATURES, str(folder / "hello.c"), "-o", str(module)], check=True)
    return module


def test_keep_exports_drops_the_others_and_the_module_still_runs(hello, tmp_path):
    data = hello.read_bytes()
    assert {"_start", "memory", "spare"} <= {name for name, _, _ in wasmfile.exports(data)}
    trimmed = wasmfile.keep_exports(data, {"_start", "memory"})
    assert sorted(name for name, _, _ in wasmfile.exports(trimmed)) == ["_start", "memory"]
    assert len(trimmed) < len(data)
    assert wasmfile.keep_exports(trimmed, {"_start", "memory"}) == trimmed
    out = tmp_path / "trimmed.wasm"
    out.write_bytes(trimmed)
    result = runner.run(out, ["hello"])
    assert (result.exit_code, result.stdout) == (7, b"hello\n")


def test_keep_exports_refuses_a_name_the_module_lacks(hello):
    with pytest.raises(ValueError, match="main_loop"):
        wasmfile.keep_exports(hello.read_bytes(), {"_start", "main_loop"})


def test_feature_flags_follow_the_toolchain():
    flags = optimize.feature_flags()
    assert {"--enable-exception-handling", "--enable-reference-types"} <= set(flags)
    assert len(flags) == toolchain.WASM_FEATURES.count("+") + 1
    with pytest.raises(KilnError, match="simd128"):
        optimize.feature_flags("-mcpu=generic+bulk_memory+simd128")


@pytest.mark.parametrize("value", [None, [], "-Oz", ["Oz"], ["-Oz", 3]])
def test_a_bad_wasm_opt_setting_is_one_clear_error(value):
    with pytest.raises(KilnError, match=r"recipe.toml: \[settings\] wasm_opt"):
        optimize.passes({} if value is None else {"wasm_opt": value})


def test_the_recipe_setting_is_valid():
    from kiln import recipe
    assert optimize.passes(recipe.language("php").settings)[0].startswith("-O")


def test_wasm_opt_makes_a_smaller_module_that_runs(hello, tmp_path):
    target = tmp_path / "bin" / "hello.opt.wasm"
    target.parent.mkdir()
    sizes = optimize.optimize(hello, target, ["-Oz", "--strip-debug"], tmp_path / "opt.log")
    assert sizes["after"] == target.stat().st_size < sizes["before"] == hello.stat().st_size
    assert sorted(target.parent.iterdir()) == [target]  # no scratch left behind
    assert sorted(name for name, _, _ in wasmfile.exports(target.read_bytes())) == ["_start", "memory"]
    result = runner.run(target, ["hello"])
    assert (result.exit_code, result.stdout) == (7, b"hello\n")


def test_a_failing_wasm_opt_leaves_no_output(hello, tmp_path):
    target = tmp_path / "hello.opt.wasm"
    with pytest.raises(KilnError, match="wasm-opt hello.wasm failed"):
        optimize.optimize(hello, target, ["--no-such-pass"], tmp_path / "opt.log")
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["opt.log"]


def test_the_installed_wasm_opt_is_the_pinned_one():
    from kiln import settings
    pinned = json.loads((settings.ROOT / "package.json").read_text())["devDependencies"]["binaryen"]
    assert optimize.version(optimize.wasm_opt()) == f"binaryen {pinned} (npm)"


def test_a_missing_wasm_opt_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_WASM_OPT", str(tmp_path / "nowhere"))
    with pytest.raises(KilnError, match="npm ci"):
        optimize.wasm_opt()


@pytest.mark.slow
def test_php_8_2_small_optimized_is_under_budget_and_passes_smoke():
    from doit_run import doit
    from kiln.layout import Build

    build = Build("php", "8.2.32", "small")
    doit("php_smoke_optimized:8.2.32-small", env={"KILN_WAIT_FOR_LOCK": "1"}, timeout=5400)
    record = json.loads((build.root / "optimized.json").read_text())
    php = record["modules"]["php"]
    assert php["after"] == (build.bin / "php.opt.wasm").stat().st_size <= PHP_BUDGET
    assert php["before"] == build.module("php").stat().st_size
    for module in ("php", "php-cgi"):
        assert record["modules"][module]["after"] < record["modules"][module]["before"]
    smoke = json.loads((build.root / "smoke-optimized.json").read_text())
    assert smoke["passed"] and {"version", "fatal-error", "cgi-get", "fiber"} <= {
        c["name"] for c in smoke["checks"] if c["passed"]}
    result = runner.run(build.bin / "php.opt.cwasm", ["php", "-r", "echo PHP_VERSION;"])
    assert (result.exit_code, result.stdout) == (0, b"8.2.32")


@pytest.mark.parametrize("value,included", [(None, False), ("off", False), ("on", True), ("1", True)])
def test_kiln_optimize_decides_whether_the_build_group_includes_it(monkeypatch, value, included):
    from tasks.group import stages_of
    if value is None:
        monkeypatch.delenv("KILN_OPTIMIZE", raising=False)
    else:
        monkeypatch.setenv("KILN_OPTIMIZE", value)
    assert ("php_smoke_optimized:8.2.32" in stages_of("8.2.32")) is included
