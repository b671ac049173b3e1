"""The image and archive libraries (libraries/*/recipe.toml) built for wasm32-wasi for real, found
through their pkg-config files, linked into one program with the toolchain PHP uses, and run
under Wasmtime: a round trip through each codec, and errors (png_error's longjmp, a file that is
not a font) handled as natively."""
import json
import shlex
import subprocess

import pytest

from kiln import engine, library, toolchain, wasmtime_cli
from kiln.layout import Build
from tests import doit_run

FIXTURE = doit_run.ROOT / "tests" / "fixtures" / "libraries" / "use-libraries.c"
# setjmp/longjmp are wasm exceptions with this tag, which the runtime must define (as PHP's build does).
SJLJ_TAG = doit_run.ROOT / "languages" / "php" / "shim" / "kiln_sjlj_tag.S"
# What the program links, by pkg-config name, and the recipes that provide them.
PACKAGES = ["libpng", "libjpeg", "libwebp", "freetype2", "libzip", "bzip2", "zlib"]
RECIPES = ["zlib", "bzip2", "libpng", "libjpeg-turbo", "libwebp", "freetype", "libzip"]

EXPECTED = [
    "zlib 1.3.1",
    "bzip2 1.0.8, 13-Jul-2019 round-trip ok",
    "libpng 1.6.48 round-trip ok, truncated file refused",
    "libjpeg 62 round-trip ok",
    "libwebp 1.5.0 lossless round-trip ok",
    "freetype 2.13.3 init ok, junk refused",
    "libzip 1.7.3 deflate archive with a folder ok",
]


@pytest.mark.slow
def test_the_image_and_archive_libraries_link_and_work(tmp_path):
    doit_run.build(*(f"lib_build:{name}" for name in RECIPES))
    libs = library.with_requirements(RECIPES)
    env = {"PKG_CONFIG_LIBDIR": ":".join(str(lib.pkgconfig_dir) for lib in libs), "PATH": "/usr/bin:/bin"}
    flags = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", *PACKAGES], env=env,
                           capture_output=True, text=True, check=True).stdout
    tools = toolchain.current()
    program = tmp_path / "use-libraries.wasm"
    built = subprocess.run([*tools.cc, *tools.cflags, *tools.cppflags, str(FIXTURE), str(SJLJ_TAG), "-o", str(program),
                            *shlex.split(flags), *tools.ldflags, *tools.libs],
                           env={**tools.env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    result = subprocess.run([str(wasmtime_cli.binary()), "run", *engine.cli_options(), str(program)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED, result.stdout + result.stderr


# The extensions with libraries: #30 (images and archives) and #31 (cryptography).
EXTENSION_CHECKS = {"gd", "exif", "zip", "bz2", "phar", "zlib-streams", "wordpress-libraries",
                    "openssl", "sodium", "phar-openssl"}


@pytest.mark.slow
@pytest.mark.parametrize("version", ["7.4.33", "8.2.32"])
def test_the_wordpress_flavour_has_its_extensions_on_both_releases(version):
    """Each extension's smoke check (output compared whole with native PHP's) passed on both
    testable releases under Wasmtime, and under WasmEdge wherever the wasmedge stage ran."""
    build = Build("php", version, "wordpress")
    doit_run.build(f"php_smoke:{build.id}")
    report = json.loads(build.smoke_report.read_text())
    assert report["passed"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert EXTENSION_CHECKS <= set(checks), sorted(checks)
    for name in EXTENSION_CHECKS:
        runtimes = checks[name]["runtimes"]
        assert runtimes["wasmtime"] == "passed", (name, checks[name]["problems"])
        assert runtimes.get("wasmedge", "passed") in ("passed", "not run"), (name, runtimes)
    assert ("iconv" in checks) == (version != "7.4.33")   # no iconv variant on 7.4
