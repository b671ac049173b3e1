"""Composer and PHPUnit (Debian's packages: PHP code under /usr/share/php, installed by
scripts/setup) on the wordpress flavour's php.wasm through `kiln run`, against native PHP
running the same commands on a copy of the same files (issue 31).

The guest sees Debian's PHP library folder read-only at /usr/share/php, the two launchers at
/usr/bin (they require ../share/php/...), the host's /etc/ssl read-only (Composer refuses to start
with openssl but no CA bundle; OPENSSLDIR is /etc/ssl, as on Debian), a writable /tmp, and a
writable /work holding the fixtures (tests/fixtures/php-tools): a Composer project whose only
dependency comes from a local path repository (packagist disabled: no network), and a PHPUnit
suite with a passing, a failing and a skipped test. Exit codes must match native PHP's, and the
output too once the folder and the timings are taken out.

Two settings Debian's php.ini gives native PHP, or WASI demands, go on the guest's command line:
include_path with /usr/share/php (Debian's phpunit requires 'PHPUnit/Autoload.php' through it),
and disable_functions for the process functions: WASI cannot start a process, so exec() and
proc_open() exist but fail ("Unable to fork"), and Composer's error handler turns that warning
into a fatal error (Symfony's ExecutableFinder calls exec('command -v ...')); disabled, Composer
takes its paths for systems without them (it checks function_exists)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.layout import Build
from tests.doit_run import build

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "php-tools"
BUILD = Build("php", "8.2.32", "wordpress")
LAUNCHERS = {"composer": Path("/usr/bin/composer"), "phpunit": Path("/usr/bin/phpunit")}
LIBRARY = Path("/usr/share/php")
# Composer would run `git` (proc_open, which WASI lacks) to guess the root package's version.
ENV = {"COMPOSER_ROOT_VERSION": "1.0.0", "COMPOSER_NO_INTERACTION": "1", "COMPOSER_DISABLE_NETWORK": "1"}
GUEST_INI = ["-d", "include_path=.:/usr/share/php",
             "-d", "disable_functions=exec,shell_exec,system,passthru,proc_open,popen"]

missing = [str(p) for p in [*LAUNCHERS.values(), LIBRARY / "Composer", LIBRARY / "PHPUnit"] if not p.exists()]
if missing:
    pytest.skip(f"Debian's composer and phpunit are not installed ({', '.join(missing)}): "
                "run scripts/setup", allow_module_level=True)


@pytest.fixture(scope="module")
def php_wasm():
    build(f"php_collect:{BUILD.id}")  # the modules only: no images or web site needed
    module = BUILD.module("php")
    assert module.is_file(), module
    return module


class Runner:
    """One tool command, in the guest or natively, on its own copy of the fixtures."""

    def __init__(self, base: Path, php_wasm: Path | None):
        self.base, self.php_wasm = base, php_wasm
        self.work = base / "work"
        shutil.copytree(FIXTURES, self.work)
        (self.work / "home").mkdir()
        self.tmp = base / "tmp"
        self.tmp.mkdir()
        self.bin = base / "bin"
        self.bin.mkdir()
        for name, path in LAUNCHERS.items():
            shutil.copy(path, self.bin / name)

    def root(self) -> str:
        """Where /work is for the PHP that runs."""
        return "/work" if self.php_wasm else str(self.work)

    def __call__(self, tool: str, *args: str) -> tuple[int, str]:
        env = {**ENV, "COMPOSER_HOME": f"{self.root()}/home"}
        if self.php_wasm:
            command = [sys.executable, "-m", "kiln", "run",
                       "-v", f"{LIBRARY}:{LIBRARY}:ro", "-v", f"{self.bin}:/usr/bin:ro",
                       "-v", "/etc/ssl:/etc/ssl:ro", "-v", f"{self.tmp}:/tmp",
                       "-v", f"{self.work}:/work", *[f"-e{k}={v}" for k, v in env.items()],
                       "--timeout", "300", str(self.php_wasm), *GUEST_INI, f"/usr/bin/{tool}", *args]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=400,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        else:
            proc = subprocess.run(["php", str(LAUNCHERS[tool]), *args], capture_output=True,
                                  text=True, timeout=400, cwd=self.work,
                                  env={"PATH": "/usr/bin:/bin", **env})
        return proc.returncode, normalise(proc.stdout + proc.stderr, self.root())


def normalise(text: str, root: str) -> str:
    text = text.replace(root, "<work>")
    text = re.sub(r"^Time: .*$", "Time: <t>", text, flags=re.M)
    return text.strip()


@pytest.fixture(scope="module")
def runners(php_wasm, tmp_path_factory):
    return {"wasm": Runner(tmp_path_factory.mktemp("tools-wasm"), php_wasm),
            "native": Runner(tmp_path_factory.mktemp("tools-native"), None)}


def both(runners, tool, *args):
    """The same command in the guest and natively: (wasm result, native result)."""
    native = runners["native"](tool, *[a.replace("{work}", runners["native"].root()) for a in args])
    wasm = runners["wasm"](tool, *[a.replace("{work}", runners["wasm"].root()) for a in args])
    return wasm, native


def test_composer_validate(runners):
    wasm, native = both(runners, "composer", "validate", "--working-dir={work}/composer/project")
    assert native[0] == 0, native
    assert wasm == native


def test_composer_install_from_a_local_path_repository(runners):
    wasm, native = both(runners, "composer", "install", "--no-progress",
                        "--working-dir={work}/composer/project")
    assert native[0] == 0, native
    assert "Installing kiln/greeter (1.2.0): Mirroring from ../packages/greeter" in native[1]
    assert wasm == native
    for runner in runners.values():
        project = runner.work / "composer" / "project"
        lock = json.loads((project / "composer.lock").read_text())
        assert [p["name"] for p in lock["packages"]] == ["kiln/greeter"]
        assert (project / "vendor" / "kiln" / "greeter" / "src" / "Greeter.php").is_file()


def test_composer_dump_autoload_and_the_autoloader_works(runners):
    wasm, native = both(runners, "composer", "dump-autoload", "--optimize",
                        "--working-dir={work}/composer/project")
    assert native[0] == 0, native
    assert wasm == native
    classmap = runners["wasm"].work / "composer" / "project" / "vendor" / "composer" / "autoload_classmap.php"
    assert "Kiln\\\\Greeter\\\\Greeter" in classmap.read_text()


def test_phpunit_passes_fails_and_skips_as_natively(runners):
    wasm, native = both(runners, "phpunit", "--configuration", "{work}/phpunit/phpunit.xml")
    assert native[0] == 1, native  # one failure
    assert "Tests: 3, Assertions: 3, Failures: 1, Skipped: 1." in native[1]
    assert ".FS" in native[1]
    assert wasm == native


def test_composer_errors_print_their_message_with_intl(tmp_path_factory):
    """Symfony's console measures an error message through Normalizer (ext/intl): without intl
    (the wordpress flavour) any Composer error ends in `Class "Normalizer" not found`; the full
    flavour (#32) prints the message and exits 1, as native PHP does."""
    full = Build("php", "8.2.32", "full")
    build(f"php_collect:{full.id}")
    wasm = Runner(tmp_path_factory.mktemp("tools-full"), full.module("php"))("composer", "nosuchcommand")
    native = Runner(tmp_path_factory.mktemp("tools-full-native"), None)("composer", "nosuchcommand")
    assert native[0] == 1 and 'Command "nosuchcommand" is not defined.' in native[1], native
    assert wasm == native
