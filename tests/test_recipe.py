import re
import shutil
import textwrap

import pytest

from kiln import recipe
from kiln.errors import KilnError

SHA = "a" * 64


def write_recipe(tmp_path, body, patches=()):
    folder = tmp_path / "lang"
    (folder / "patches").mkdir(parents=True)
    for name in patches:
        (folder / "patches" / name).write_text("--- a/x\n+++ b/x\n")
    path = folder / "recipe.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = f"""\
name = "php"
url = "https://example.invalid/php-{{version}}.tar.xz"

[versions]
"7.4.33" = "{SHA}"
"8.2.32" = "{SHA}"
"8.3.8" = "{SHA}"

[outputs]
php = "sapi/cli/php"

[[configure]]
args = ["--disable-all"]

[[configure]]
when = "@8.0:"
args = ["--disable-fiber-asm"]

[[patches]]
file = "everyone.patch"

[[patches]]
file = "eight-only.patch"
when = "@8.0:"
why = "fibers"

[[patches]]
file = "seven-four.patch"
when = "@7.4"

[variants]
cli = {{ configure = ["--enable-cli"] }}

[flavours.default]
variants = ["cli"]
"""


def test_the_php_recipe_loads_and_lists_every_release():
    php = recipe.language("php")
    assert {"7.4.32", "7.4.33", "8.0.30", "8.1.29", "8.2.20", "8.2.32", "8.3.8", "8.4.1"} <= set(php.versions)
    assert set(php.testable) == {"7.4.33", "8.2.32"}
    assert php.source_name("8.2.32") == "php-8.2.32.tar.xz"


def test_patches_follow_their_version_ranges(tmp_path):
    r = recipe.load(write_recipe(tmp_path, GOOD, ["everyone.patch", "eight-only.patch", "seven-four.patch"]))
    assert [p.name for p in r.patches_for("7.4.33")] == ["everyone.patch", "seven-four.patch"]
    assert [p.name for p in r.patches_for("8.2.32")] == ["everyone.patch", "eight-only.patch"]
    assert r.configure_args("7.4.33", "default") == ["--disable-all", "--enable-cli"]
    assert r.configure_args("8.3.8", "default") == ["--disable-all", "--disable-fiber-asm", "--enable-cli"]


def test_a_patch_can_ask_for_configure_to_be_regenerated_in_its_range(tmp_path):
    body = GOOD.replace('when = "@7.4"', 'when = "@7.4"\nregenerates_configure = true')
    r = recipe.load(write_recipe(tmp_path, body, ["everyone.patch", "eight-only.patch", "seven-four.patch"]))
    assert r.regenerates_configure("7.4.33")
    assert not r.regenerates_configure("8.2.32")
    php = recipe.language("php")   # the OPcache patches edit config.m4: 8.2's wordpress flavour only
    assert php.regenerates_configure("8.2.32", "wordpress")
    assert not php.regenerates_configure("8.2.32") and not php.regenerates_configure("7.4.33")


def test_a_patch_can_be_limited_to_a_variant(tmp_path):
    body = GOOD.replace('when = "@7.4"', 'when = "@7.4 +fast"').replace(
        "[variants]\n", '[variants]\nfast = { configure = ["--enable-fast"] }\n') + \
        '\n[flavours.fast]\nvariants = ["fast"]\n'
    r = recipe.load(write_recipe(tmp_path, body, ["everyone.patch", "eight-only.patch", "seven-four.patch"]))
    assert [p.name for p in r.patches_for("7.4.33")] == ["everyone.patch"]
    assert [p.name for p in r.patches_for("7.4.33", "fast")] == ["everyone.patch", "seven-four.patch"]
    assert [p.name for p in r.patches_for("8.2.32", "fast")] == ["everyone.patch", "eight-only.patch"]
    bad = body.replace('when = "@7.4 +fast"', 'when = "@7.4 +slow"')
    path = write_recipe(tmp_path / "bad", bad, ["everyone.patch", "eight-only.patch", "seven-four.patch"])
    with pytest.raises(KilnError, match=r"recipe.toml:28: `when` = \"@7.4 \+slow\" names unknown variant 'slow'"):
        recipe.load(path)


def test_regenerating_configure_names_autoconf_or_says_how_to_get_it(monkeypatch, tmp_path):
    from kiln import toolchain
    toolchain.autoconf_version.cache_clear()
    if shutil.which("autoconf"):
        assert re.fullmatch(r"autoconf \d+\.\d+\S*", toolchain.autoconf_version())
        toolchain.autoconf_version.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty folder: no autoconf on it
    try:
        with pytest.raises(KilnError, match=r"autoconf is not installed.*apt-get install autoconf"):
            toolchain.autoconf_version()
    finally:
        toolchain.autoconf_version.cache_clear()


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(KilnError, match=r"unknown php version '9.9.9': known versions are 7.4.32, .*8.4.1"):
        recipe.language("php").check_version("9.9.9")


def test_unknown_flavour_is_named():
    with pytest.raises(KilnError, match="unknown php flavour 'nope'"):
        recipe.language("php").check_flavour("nope")


@pytest.mark.parametrize(
    "change, message, line",
    [
        (('"8.3.8" = "' + SHA + '"', '"8.3.8" = "abc"'), "sha256 of 8.3.8 must be 64", 7),
        (('when = "@8.0:"\nargs', 'when = "8.0:"\nargs'), "must start with '@'", 16),
        (('file = "eight-only.patch"', 'file = "missing.patch"'), "missing.patch does not exist", 23),
        (("name = \"php\"", "name = \"php\"\ncolour = 1"), "unknown key .colour.", 2),
        (('when = "@7.4"', 'when = "@7.4"\nregenerates_configure = "yes"'),
         "regenerates_configure. must be a bool", 28),
        (('url = "https', 'url = https'), "not valid TOML", None),
        (('variants = ["cli"]', 'variants = ["cli"]\ncflags = ["-Oz"]'),
         r"flavour default: unknown key\(s\) cflags \(a flavour is a set of variants", 34),
    ],
)
def test_malformed_recipes_name_file_and_line(tmp_path, change, message, line):
    path = write_recipe(tmp_path, GOOD.replace(*change), ["everyone.patch", "eight-only.patch", "seven-four.patch"])
    with pytest.raises(KilnError, match=message) as info:
        recipe.load(path)
    text = str(info.value)
    assert str(path) in text
    if line is not None:
        assert f"{path}:{line}:" in text
    assert "\n" not in text


PATCHES = ["everyone.patch", "eight-only.patch", "seven-four.patch"]

# Variants as the PHP recipe uses them: a VM kind, C flags, arguments replacing a shared one,
# an off-form in [[configure]] (`~xml`), a release range, requires and conflicts.
VARIANTS = GOOD.replace('args = ["--disable-all"]', 'args = ["--disable-all", "--disable-opcache"]').replace(
    '[[patches]]\nfile = "seven-four.patch"', '[[configure]]\nwhen = "~xml"\nargs = ["--without-libxml"]\n\n'
    '[[patches]]\nfile = "seven-four.patch"').replace('when = "@7.4"\n', 'when = "@7.4: +opcache ~goto"\n') + """
[variants.xml]
configure = ["--with-libxml"]
libraries = ["libxml2"]

[variants.opcache]
when = "@8.2"
configure = ["--enable-opcache"]
replaces = ["--disable-opcache"]

[variants.goto]
vm_kind = "GOTO"
execute_cflags = ["-w"]
conflicts = ["size"]

[variants.size]
cflags = ["-Oz"]
requires = ["cli"]

[flavours.wp]
when = "@8.2:8.2"
variants = ["xml", "opcache", "goto"]
"""
TOP_VM = 'name = "php"\nvm_kind = "TAILCALL"'


def load_variants(tmp_path, body=VARIANTS):
    return recipe.load(write_recipe(tmp_path, body.replace('name = "php"', TOP_VM), PATCHES))


def test_when_matches_ranges_variants_and_both():
    from kiln.when import When
    both = When.parse("@8.2: +opcache ~goto")
    assert both.satisfied_by("8.2.32", {"opcache"}) and both.satisfied_by("8.4.1", {"opcache", "xml"})
    assert not both.satisfied_by("8.1.29", {"opcache"})          # the range
    assert not both.satisfied_by("8.2.32", set())                # +opcache missing
    assert not both.satisfied_by("8.2.32", {"opcache", "goto"})  # ~goto
    tight, spaced = When.parse("@8.2+opcache"), When.parse("@8.2 +opcache")
    assert (tight.versions, tight.on) == (spaced.versions, spaced.on) == (spaced.versions, {"opcache"})
    only_variant = When.parse("+xml")
    assert only_variant.satisfied_by("7.4.33", {"xml"}) and not only_variant.satisfied_by("7.4.33", {"goto"})
    assert When.parse("~xml").satisfied_by("8.2.32", set()) and When.parse("").satisfied_by("7.4.33", {"x"})
    assert When.parse("@7.4").satisfied_by("7.4.33", {"goto"}) and not When.parse("@7.4").satisfied_by("8.0.30", ())
    for bad, message in [("@8.2 opcache", "not understood"), ("+a +a", "twice"), ("@7 @8", "two version"),
                         ("8.2", "must start with .@."), ("@8.x", "not a version")]:
        with pytest.raises(ValueError, match=message):
            When.parse(bad)


def test_a_build_resolves_from_its_variants(tmp_path):
    r = load_variants(tmp_path)
    wp = r.resolve("8.2.32", "wp")
    assert wp.variants == ("xml", "opcache", "goto")  # declaration order, whatever the flavour's
    # opcache `replaces` the common --disable-opcache: taken out, not overridden by order.
    assert wp.configure == ("--disable-all", "--disable-fiber-asm", "--with-libxml", "--enable-opcache")
    assert (wp.vm_kind, wp.execute_cflags, wp.libraries, wp.cflags) == ("GOTO", ("-w",), ("libxml2",), ())
    assert [p.name for p in wp.patches] == ["everyone.patch", "eight-only.patch"]  # ~goto: not seven-four
    default = r.resolve("8.2.32", "default")
    assert default.configure == ("--disable-all", "--disable-opcache", "--disable-fiber-asm",
                                 "--without-libxml", "--enable-cli")
    assert (default.vm_kind, default.libraries) == ("TAILCALL", ())
    assert r.flavour_applies("wp", "8.2.32") and not r.flavour_applies("wp", "8.3.8")


def test_a_patch_for_a_variant_follows_both_its_range_and_the_variant(tmp_path):
    body = VARIANTS + '\n[flavours.cached]\nvariants = ["opcache"]\n'
    r = load_variants(tmp_path, body)
    assert "seven-four.patch" in [p.name for p in r.resolve("8.2.32", "cached").patches]
    assert "seven-four.patch" not in [p.name for p in r.resolve("8.2.32", "default").patches]
    # No explicit `when`: the flavour exists where its variants do (opcache: 8.2 only).
    assert r.flavour_applies("cached", "8.2.32") and not r.flavour_applies("cached", "8.3.8")
    with pytest.raises(KilnError, match=r'no php 8.3.8 cached build: the cached flavour is for 8.2 only '
                                        r'\(when = "@8.2" of its variant opcache'):
        r.check_build("8.3.8", "cached")


def variant_error(tmp_path, change, extra=""):
    body = VARIANTS.replace(*change) + extra if change else VARIANTS + extra
    assert body != VARIANTS
    path = write_recipe(tmp_path, body.replace('name = "php"', TOP_VM), PATCHES)
    with pytest.raises(KilnError) as info:
        recipe.load(path)
    text = str(info.value)
    assert "\n" not in text
    return text, path


def line_of(body: str, needle: str) -> int:
    return body.replace('name = "php"', TOP_VM).splitlines().index(needle) + 1


@pytest.mark.parametrize("change, extra, message, at", [
    # An unknown variant: where the flavour lists it, and how to fix it.
    (('variants = ["xml", "opcache", "goto"]', 'variants = ["xml", "opcahe", "goto"]'), "",
     r"flavour wp: unknown variant 'opcahe' \(known: cli, xml, opcache, goto, size; declare it", 'variants = ["xml", "opcahe", "goto"]'),
    # A conflict, named with the line of the variant that declares it.
    (None, '\n[flavours.tiny]\nvariants = ["goto", "size", "cli"]\n',
     r"flavour tiny: variant goto conflicts with size \(recipe.toml:\d+\): take one of them out", 'variants = ["goto", "size", "cli"]'),
    (None, '\n[flavours.tiny]\nvariants = ["size"]\n',
     r"flavour tiny: variant size requires cli \(recipe.toml:\d+\): add cli to its variants", 'variants = ["size"]'),
    # A variant unavailable for a release the flavour's range names.
    (('when = "@8.2:8.2"', 'when = "@8.0:"'), "",
     r'flavour wp: variant opcache is unavailable for 8.3.8 '
     r'\(its when = "@8.2" at recipe.toml:\d+\): narrow the flavour\'s when = "@8.0:" or widen the variant\'s', 'variants = ["xml", "opcache", "goto"]'),
    # A library with no recipe in libraries/.
    (('libraries = ["libxml2"]', 'libraries = ["libxml3"]'), "",
     r"variant xml links library 'libxml3', which has no recipe: add libraries/libxml3/recipe.toml", "[variants.xml]"),
    # Meaning that would depend on the order of arguments: an override nobody declared.
    (('replaces = ["--disable-opcache"]\n', ''), "",
     r"8.2.32 wp would get '--enable-opcache' after '--disable-opcache': its meaning would depend on the order",
     "[flavours.wp]"),
    (('configure = ["--with-libxml"]', 'configure = ["--with-libxml", "--disable-all"]'), "",
     r"would get '--disable-all' twice", "[flavours.wp]"),
    (('vm_kind = "GOTO"', 'vm_kind = "FAST"'), "", r"variant goto: vm_kind must be one of CALL, SWITCH, GOTO, TAILCALL",
     "[variants.goto]"),
    (('cflags = ["-Oz"]', 'cflags = ["-Oz"]\nflavours = ["x"]'), "", r"variant size: unknown key\(s\) flavours",
     "[variants.size]"),
    (('requires = ["cli"]', 'requires = ["cl1"]'), "", r"variant size names unknown variant 'cl1'", "[variants.size]"),
    # A configure argument naming the folder of a library its variant does not link.
    (('configure = ["--with-libxml"]', 'configure = ["--with-libxml={prefix:zlib}"]'), "",
     r"variant xml: '--with-libxml=\{prefix:zlib\}' names the folder of library 'zlib', which the variant "
     r"does not link: add it to its `libraries`", "[variants.xml]"),
    # where_available names variants like `variants` does.
    (('variants = ["xml", "opcache", "goto"]', 'variants = ["xml", "goto"]\nwhere_available = ["opcahe"]'), "",
     r"flavour wp: unknown variant 'opcahe'", 'where_available = ["opcahe"]'),
])
def test_variant_errors_name_the_recipe_line_and_the_fix(tmp_path, change, extra, message, at):
    text, path = variant_error(tmp_path, change, extra)
    assert re.search(message, text), text
    body = (VARIANTS.replace(*change) if change else VARIANTS) + extra
    assert text.startswith(f"{path}:{line_of(body, at)}: "), text


def test_a_flavour_that_still_lists_arguments_is_told_to_use_variants(tmp_path):
    text, _ = variant_error(tmp_path, ('variants = ["cli"]', 'configure = ["--enable-cli"]'))
    assert "a flavour is a set of variants" in text


def test_a_bad_recipe_stops_the_graph_with_exit_2(tmp_path):
    """What `doit` does with any recipe error: dodo.py prints the one line and exits 2."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "kiln"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".venv", "build-output", ".git", "node_modules"))
    php = copy / "languages" / "php" / "recipe.toml"
    text = php.read_text()
    assert text.count('variants = ["size"]') == 1
    php.write_text(text.replace('variants = ["size"]', 'variants = ["sizee"]'))
    result = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=copy, capture_output=True, text=True,
                            env={**__import__("os").environ, "KILN_BUILD_OUTPUT": str(tmp_path / "out")})
    assert result.returncode == 2, result.stderr
    assert re.search(r"recipe.toml:\d+: flavour small: unknown variant 'sizee'", result.stderr), result.stderr


def test_the_vm_kind_is_part_of_the_tracked_configure_script_and_the_cache_key():
    import dataclasses

    from kiln import remote_cache, tailcall_vm, toolchain
    from kiln.layout import Build
    from tasks import configure

    tools = toolchain.Toolchain(name="zig", version="0.0", cc=["zig", "cc"], ar=["zig", "ar"],
                                ranlib=["zig", "ranlib"], nm=["nm"])
    php = recipe.language("php")
    build = Build("php", "8.2.32", "default")
    # 7.4.33's default flavour runs the recipe's default kind (8.x's, the goto variant).
    seven = Build("php", "7.4.33", "default")
    scripts, keys = {}, {}
    for kind in recipe.VM_KINDS:
        changed = dataclasses.replace(php, vm_kind_default=kind)
        scripts[kind] = configure.render_script(seven, tools, changed)
        keys[kind] = remote_cache.key(seven, changed, tools)
    # The script text is what php_configure tracks (config_changed): another kind reconfigures.
    assert len(set(scripts.values())) == len(keys) == len(set(keys.values())) == len(recipe.VM_KINDS)
    assert "zend_vm_gen.php --with-vm-kind=SWITCH" in scripts["SWITCH"]
    # TAILCALL is the CALL VM rewritten by Kiln: the script names the rewrite's digest.
    assert "zend_vm_gen.php --with-vm-kind=CALL" in scripts["TAILCALL"]
    assert "-m kiln.tailcall_vm Zend/zend_vm_execute.h" in scripts["TAILCALL"]
    assert tailcall_vm.tool().digest in scripts["TAILCALL"]
    assert "zend_vm_gen.php" not in scripts["CALL"]
    # Flags for zend_execute.c alone, through a target-specific variable; named first in the make.
    switch = dataclasses.replace(php.variants["goto"], vm_kind="SWITCH")
    flagged = dataclasses.replace(php, variants={**php.variants, "goto": switch}, flavours={
        **php.flavours, "default": dataclasses.replace(php.flavours["default"], variants=("goto",))})
    script = configure.render_script(build, tools, flagged)
    assert ("printf 'Zend/zend_execute.lo: override EXTRA_CFLAGS += %s\\n' "
            "'-w -mllvm -wasm-disable-fix-irreducible-control-flow-pass' > kiln-execute.mk") in script
    # GOTO is also Kiln's edit of the generated VM (kiln/goto_vm.py): named with its digest.
    from kiln import goto_vm
    assert "-m kiln.goto_vm Zend/zend_vm_execute.h" in scripts["GOTO"] and goto_vm.tool().digest in scripts["GOTO"]
    assert "kiln.goto_vm" not in scripts["SWITCH"] and "kiln.goto_vm" not in scripts["TAILCALL"]
    assert "-f kiln-execute.mk" in script and "zend_execute.lo" not in scripts["SWITCH"]
    assert remote_cache.key(build, flagged, tools) != keys["SWITCH"]
    # CALL puts the release's generated VM back, from the pristine tree.
    assert f"PRISTINE={seven.pristine}" in scripts["CALL"] and "zend_vm_execute.h" in scripts["CALL"]


def test_a_variants_cflags_reach_its_script_and_its_cache_key():
    """A variant that only changes C flags (e.g. -Oz for size) is another build: another
    tracked script, so php_configure reruns, and another remote-cache key."""
    import dataclasses

    from kiln import remote_cache, toolchain
    from kiln.layout import Build
    from tasks import configure

    tools = toolchain.Toolchain(name="zig", version="0.0", cc=["zig", "cc"], ar=["zig", "ar"],
                                ranlib=["zig", "ranlib"], nm=["nm"], cflags=["-O2", "-g0"])
    php = recipe.language("php")
    build = Build("php", "8.2.32", "default")
    small = dataclasses.replace(php, flavours={
        **php.flavours, "default": dataclasses.replace(php.flavours["default"], variants=("size",))})
    plain, sized = (configure.render_script(build, tools, r) for r in (php, small))
    assert "CFLAGS='-O2 -g0'\n" in plain
    assert "CFLAGS='-O2 -g0 -Oz'\n" in sized
    assert remote_cache.key(build, php, tools) != remote_cache.key(build, small, tools)


def test_every_build_gets_goto_where_the_release_has_it_and_tailcall_before():
    """GOTO, 0.44 of TAILCALL's time on bench.php, compiles as cheaply since kiln/goto_vm.py:
    every 8.x flavour runs it but `compat` (for crun's WasmEdge handler, which turns on no tail
    calls: the release's own CALL VM) and `fibers` (GOTO's execute_ex frame is too large for a
    fiber's C stack); 7.4, whose shipped VM disagrees with its generator, keeps the tail-calling
    one."""
    php = recipe.language("php")
    kinds = {flavour: php.vm_kind("8.2.32", flavour) for flavour in php.flavours}
    assert kinds == {"default": "GOTO", "small": "GOTO", "wordpress": "GOTO", "compat": "CALL",
                     "fibers": "TAILCALL", "full": "GOTO"}
    assert {php.vm_kind("7.4.33", f) for f in php.flavours if php.flavour_applies(f, "7.4.33")} == {"TAILCALL"}
    assert php.resolve("8.2.32", "default").execute_cflags == (
        "-w", "-mllvm", "-wasm-disable-fix-irreducible-control-flow-pass")


def test_the_php_recipe_says_each_argument_once_and_flavours_are_only_variants():
    """Issue #29: no argument repeated between flavours, OPcache's patches keyed to the feature."""
    php = recipe.language("php")
    assert all(set(f.__dataclass_fields__) == {"name", "line", "description", "variants", "when",
                                               "explicit_when", "where_available"}
               for f in php.flavours.values())
    wordpress = php.resolve("8.2.32", "wordpress")
    assert {p.name for p in wordpress.patches} - {p.name for p in php.resolve("8.2.32").patches} == {
        "0009-opcache-builtin-wasi-8.2.patch", "0010-opcache-accelerator-wasi-8.2.patch",
        "0011-opcache-file-cache-short-writes-8.2.patch", "0014-opcache-shared-memory-wasi-8.2.patch",
        "0018-phar-extract-without-chmod-wasi.patch", "0019-zlib-gzopen-without-dup-wasi.patch",
        "0021-openssl-no-sockets-wasi.patch"}  # issue 31: +openssl
    assert all("+opcache" in str(p.when) for p in wordpress.patches if "opcache" in p.name)
