"""ICU (libraries/icu, style "icu", issue 32): the recipe and its build script (fast), and the
library built for real by the graph, linked into a small C program through its pkg-config files
and run under Wasmtime (slow): the locale data is linked in and answers as native ICU 76 does."""
import os
import subprocess

import pytest

from kiln import library, settings, toolchain
from kiln.errors import KilnError
from tests.test_library import GOOD, fake_tools, write

PROGRAM = settings.ROOT / "tests" / "fixtures" / "libraries" / "use-icu.c"

# What native ICU 76.1 prints for tests/fixtures/libraries/use-icu.c (U+00A0 before the euro sign).
EXPECTED = [
    "icu 76.1 unicode 16.0",
    "number en_US 1,234,567.891",
    "number de_DE 1.234.567,891",
    "currency de_DE 1.234,50\u00a0\u20ac",
    "collate fr_FR \u00e4pple < zebra",
    "collate sv_SE zebra < \u00e4pple",
    "nfd length 2",
    "any-latin Moskva",
    "char U+00E9 LATIN SMALL LETTER E WITH ACUTE, alphabetic 1",
    "idna xn--bcher-kva.example",
]


def icu_tools():
    return toolchain.Toolchain(**{**fake_tools().__dict__, "cxx": ["zig", "c++", "-target", "wasm32-wasi"]})


def test_the_icu_recipe_cross_builds_with_a_native_icu_and_links_its_data():
    from tasks import library as library_tasks

    icu = library.get("icu")
    assert (icu.style, icu.version, icu.package, icu.root) == ("icu", "76.1", "icu", "icu")
    assert [p.name for p in icu.patches] == ["0001-umutex-single-threaded-libcxx-wasi.patch"]
    for option in ("--disable-tools", "--disable-dyload", "--disable-tests"):
        assert option in icu.configure, option
    script = library_tasks.render_script(icu, icu_tools())
    assert "CXX='zig c++ -target wasm32-wasi'" in script
    # The native build comes first, and the cross build names it.
    assert script.index("../source/configure --disable-shared") < script.index('--with-cross-build="$NATIVE"')
    assert "icu_cv_host_frag=mh-linux ../source/configure" in script
    # The stub data library is replaced by the data, cut to the recipe's languages if it lists any.
    assert '"$NATIVE/bin/genccode" -e icudt76 -d . icudt76l.dat' in script
    assert ("icupkg\" -r dropped-items.txt" in script) == bool(icu.data_locales)
    assert "-lc++ -lc++abi" in script


def test_data_locales_cut_the_data_to_those_languages(tmp_path):
    from tasks import library as library_tasks

    path = write(tmp_path, "icu", GOOD.replace('name = "zlib"', 'name = "icu"')
                 .replace('style = "chost"', 'style = "icu"\ndata_locales = ["en", "de"]')
                 .replace('make = ["libz.a"]\ninstall = ["install"]\n', ''))
    lib = library.load(path)
    assert lib.data_locales == ("en", "de")
    script = library_tasks.render_script(lib, icu_tools())
    assert "(root|res_index|en|de)(_[A-Za-z0-9_]*)?" in script


@pytest.mark.parametrize("entry", ["de_DE", "German", "*", "d"])
def test_a_data_locale_is_a_language_code(tmp_path, entry):
    path = write(tmp_path, "icu", GOOD.replace('name = "zlib"', 'name = "icu"')
                 .replace('style = "chost"', f'style = "icu"\ndata_locales = ["{entry}"]')
                 .replace('make = ["libz.a"]\ninstall = ["install"]\n', ''))
    with pytest.raises(KilnError, match="data_locales entry .* must be a language code") as error:
        library.load(path)
    assert str(error.value).startswith(f"{path}:")


def test_only_the_icu_style_takes_data_locales(tmp_path):
    path = write(tmp_path, "zlib", GOOD.replace('install = ["install"]', 'install = ["install"]\ndata_locales = ["en"]'))
    with pytest.raises(KilnError, match="style 'chost' takes no data_locales"):
        library.load(path)


@pytest.mark.slow
def test_icu_builds_links_and_answers_with_its_data_in_wasmtime(tmp_path):
    """lib_build:icu for real (native ICU, then the cross build), then a C program linked through
    icu-uc and icu-i18n's pkg-config files (libc++ included) runs under Wasmtime."""
    from kiln import runner
    from tests.doit_run import build

    build("lib_build:icu")
    icu = library.get("icu")
    installed = {p.name for p in (icu.prefix / "lib").iterdir()}
    assert {"libicuuc.a", "libicui18n.a", "libicuio.a", "libicudata.a"} <= installed
    assert {"icu-uc.pc", "icu-i18n.pc", "icu-io.pc"} <= {p.name for p in icu.pkgconfig_dir.iterdir()}
    for pc in icu.pkgconfig_dir.glob("*.pc"):
        assert str(settings.build_output()) not in pc.read_text(), pc  # relocatable

    env = {**os.environ, "PKG_CONFIG_LIBDIR": str(icu.pkgconfig_dir), "PKG_CONFIG_PATH": ""}
    flags = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", "icu-i18n", "icu-uc"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert "-lc++" in flags
    tools = toolchain.current()
    module = tmp_path / "use-icu.wasm"
    built = subprocess.run([*tools.cc, *tools.cflags, *tools.cppflags, str(PROGRAM), *flags,
                            *tools.ldflags, *tools.libs, "-o", str(module)],
                           env={**os.environ, **tools.env}, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    result = runner.run(module, ["use-icu"], timeout=120)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode().splitlines() == EXPECTED


def test_the_full_flavour_is_the_wordpress_one_plus_intl():
    from kiln import recipe

    php = recipe.language("php")
    for version in ("7.4.33", "8.2.32"):
        full, wordpress = php.resolve(version, "full"), php.resolve(version, "wordpress")
        assert set(full.variants) == set(wordpress.variants) | {"intl"}, version
        assert full.vm_kind == wordpress.vm_kind and "icu" in full.libraries
    # The same VM, so that the compiler cache compiles GOTO's zend_execute.c once for both.
    assert php.resolve("8.2.32", "full").vm_kind == "GOTO"
    assert "--enable-intl" in php.configure_args("8.2.32", "full")
    # 7.4 to 8.1's intl asked for C++11; ICU 76's headers need C++17 (patch 0024, configure regenerated).
    full74 = php.resolve("7.4.33", "full")
    assert "intl" in full74.variants and full74.regenerates_configure
    for version in ("7.4.33", "8.0.30", "8.1.29"):
        assert "0024-intl-cxx17-icu76.patch" in [p.file.name for p in php.resolve(version, "full").patches], version
    assert "0024-intl-cxx17-icu76.patch" not in [p.file.name for p in full.patches]
    wordpress74 = php.resolve("7.4.33", "wordpress")
    assert "0024-intl-cxx17-icu76.patch" not in [p.file.name for p in wordpress74.patches]


def test_only_builds_linking_a_cplusplus_library_get_a_cplusplus_compiler():
    from kiln.layout import Build
    from tasks.configure import render_script

    tools = icu_tools()
    full = render_script(Build("php", "8.2.32", "full"), tools)
    assert "CXX='zig c++ -target wasm32-wasi'" in full and 'CXX="$CXX" CXXFLAGS="$CXXFLAGS"' in full
    assert "-fno-exceptions" in full
    wordpress = render_script(Build("php", "8.2.32", "wordpress"), tools)
    assert "CXX" not in wordpress


@pytest.mark.slow
@pytest.mark.parametrize("version", ["7.4.33", "8.2.32"])
def test_the_full_flavour_formats_collates_and_transliterates_as_native_php(version):
    """php_smoke of the full flavour on both testable releases: the intl check's output (intl.expected, native PHP's) matches
    under Wasmtime, and the wordpress flavour's extension checks still pass beside it."""
    import json

    from kiln.layout import Build
    from tests.doit_run import build

    full = Build("php", version, "full")
    build(f"php_smoke:{full.id}")
    report = json.loads(full.smoke_report.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["intl"]["runtimes"]["wasmtime"] == "passed", checks["intl"]["problems"]
    assert report["passed"] is True, [c["name"] for c in report["checks"] if c.get("problems")]


@pytest.mark.slow
def test_with_the_stub_in_place_of_its_data_icu_answers_from_the_data_file_alone(tmp_path):
    """The data-file option bench/icu_data.py measures: use-icu.c linked with bench/icu_stub_data.c
    instead of libicudata.a answers as with the data linked in when $ICU_DATA names a granted
    folder holding the cut package, and with ICU's errors when nothing is granted (so the answers
    do come from the file)."""
    import importlib.util

    from kiln import runner
    from kiln.cliargs import parse_grant
    from tests.doit_run import build

    spec = importlib.util.spec_from_file_location("icu_bench", settings.ROOT / "bench" / "icu_data.py")
    icu_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(icu_bench)
    build("lib_build:icu")
    icu = library.get("icu")
    module = icu_bench.link_program(icu, tmp_path / "use-icu-file.wasm", "file")
    assert module.stat().st_size < 4_000_000   # no data inside: 1.8 MB of code
    folder = tmp_path / "icu"
    folder.mkdir()
    package = icu_bench.cut_package(icu)
    (folder / package.name).write_bytes(package.read_bytes())

    granted = runner.run(module, ["use-icu"], env={"ICU_DATA": "/icu"},
                         preopens=[parse_grant(f"{folder}:/icu:ro")], timeout=120)
    assert granted.exit_code == 0, granted.stderr
    assert granted.stdout.decode().splitlines() == EXPECTED
    alone = runner.run(module, ["use-icu"], env={"ICU_DATA": "/icu"}, timeout=120)
    # NFD and the basic properties are compiled into ICU's code; the rest needs the data.
    assert "number de_DE U_MISSING_RESOURCE_ERROR" in alone.stdout.decode().splitlines(), alone.stdout
    assert "collate sv_SE U_FILE_ACCESS_ERROR" in alone.stdout.decode().splitlines(), alone.stdout
