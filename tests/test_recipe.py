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

[flavours.default]
configure = ["--enable-cli"]
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


def test_a_patch_can_be_limited_to_flavours(tmp_path):
    body = GOOD.replace('when = "@7.4"', 'when = "@7.4"\nflavours = ["fast"]') + \
        '\n[flavours.fast]\nconfigure = ["--enable-fast"]\n'
    r = recipe.load(write_recipe(tmp_path, body, ["everyone.patch", "eight-only.patch", "seven-four.patch"]))
    assert [p.name for p in r.patches_for("7.4.33")] == ["everyone.patch"]
    assert [p.name for p in r.patches_for("7.4.33", "fast")] == ["everyone.patch", "seven-four.patch"]
    bad = body.replace('flavours = ["fast"]', 'flavours = ["slow"]')
    path = write_recipe(tmp_path / "bad", bad, ["everyone.patch", "eight-only.patch", "seven-four.patch"])
    with pytest.raises(KilnError, match=r"recipe.toml:\d+: patch seven-four.patch: unknown flavour 'slow'"):
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
        (('configure = ["--enable-cli"]', 'configure = ["--enable-cli"]\ncflags = "-Oz"'),
         "cflags must be a list", 33),
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


VM_KINDS = GOOD + """
[flavours.wordpress]
configure = ["--with-sqlite3"]

[[vm_kind]]
kind = "CALL"

[[vm_kind]]
when = "@8.2:"
kind = "SWITCH"

[[vm_kind]]
when = "@8.3:"
flavours = ["wordpress"]
kind = "GOTO"
execute_cflags = ["-w"]
"""
PATCHES = ["everyone.patch", "eight-only.patch", "seven-four.patch"]


def test_the_vm_kind_follows_release_ranges_and_flavours(tmp_path):
    r = recipe.load(write_recipe(tmp_path, VM_KINDS, PATCHES))
    assert r.vm_kind("7.4.33", "default") == "CALL"
    assert r.vm_kind("8.2.32", "default") == "SWITCH"
    assert r.vm_kind("8.2.32", "wordpress") == "SWITCH"
    assert r.vm_kind("8.3.8", "default") == "SWITCH"
    assert r.vm_kind("8.3.8", "wordpress") == "GOTO"  # the last entry covering the build wins
    assert r.vm("8.3.8", "wordpress").execute_cflags == ("-w",)
    assert r.vm("8.3.8", "default").execute_cflags == ()
    # No [[vm_kind]] at all: the VM the release ships.
    assert recipe.load(write_recipe(tmp_path / "bare", GOOD, PATCHES)).vm_kind("8.2.32", "default") == "CALL"
    assert recipe.language("php").vm_kind("8.2.32", "default") in recipe.VM_KINDS


@pytest.mark.parametrize(
    "change, message, line",
    [
        (('kind = "SWITCH"', 'kind = "JIT"'), r"kind must be one of CALL, SWITCH, GOTO, TAILCALL, not 'JIT'", 42),
        (('kind = "SWITCH"', 'kind = "switch"'), r"not 'switch'", 42),
        (('when = "@8.2:"\nkind', 'when = "8.2:"\nkind'), "must start with '@'", 41),
        (('flavours = ["wordpress"]', 'flavours = ["wp"]'), r"unknown flavour 'wp'", 46),
        (('kind = "GOTO"', 'kind = "GOTO"\nspeed = 2'), r"unknown key\(s\) speed", 48),
        (('execute_cflags = ["-w"]', 'execute_cflags = "-w"'), r"execute_cflags must be a list", 48),
        (('name = "php"', 'name = "php"\nvm_kind = "SWITCH"'), "vm_kind .* must be a list", 2),
    ],
)
def test_a_bad_vm_kind_names_file_and_line(tmp_path, change, message, line):
    body = VM_KINDS.replace(*change)
    assert body != VM_KINDS
    if "vm_kind =" in body:  # the wrong type, alone (TOML itself rejects it beside [[vm_kind]])
        body = body[:body.index("[[vm_kind]]")]
    path = write_recipe(tmp_path, body, PATCHES)
    with pytest.raises(KilnError, match=message) as info:
        recipe.load(path)
    assert f"{path}:{line}:" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_vm_kind_is_part_of_the_tracked_configure_script_and_the_cache_key():
    import dataclasses

    from kiln import remote_cache, tailcall_vm, toolchain
    from kiln.layout import Build
    from tasks import configure

    tools = toolchain.Toolchain(name="zig", version="0.0", cc=["zig", "cc"], ar=["zig", "ar"],
                                ranlib=["zig", "ranlib"], nm=["nm"])
    php = recipe.language("php")
    build = Build("php", "8.2.32", "default")
    scripts, keys = {}, {}
    for kind in recipe.VM_KINDS:
        changed = dataclasses.replace(php, vm_kinds=(recipe.VmKind(kind=kind),))
        scripts[kind] = configure.render_script(build, tools, changed)
        keys[kind] = remote_cache.key(build, changed, tools)
    # The script text is what php_configure tracks (config_changed): another kind reconfigures.
    assert len(set(scripts.values())) == len(keys) == len(set(keys.values())) == len(recipe.VM_KINDS)
    assert "zend_vm_gen.php --with-vm-kind=SWITCH" in scripts["SWITCH"]
    # TAILCALL is the CALL VM rewritten by Kiln: the script names the rewrite's digest.
    assert "zend_vm_gen.php --with-vm-kind=CALL" in scripts["TAILCALL"]
    assert "-m kiln.tailcall_vm Zend/zend_vm_execute.h" in scripts["TAILCALL"]
    assert tailcall_vm.tool().digest in scripts["TAILCALL"]
    assert "zend_vm_gen.php" not in scripts["CALL"]
    # Flags for zend_execute.c alone, through a target-specific variable; named first in the make.
    flagged = dataclasses.replace(php, vm_kinds=(recipe.VmKind(kind="SWITCH", execute_cflags=("-w",)),))
    script = configure.render_script(build, tools, flagged)
    assert "printf 'Zend/zend_execute.lo: override EXTRA_CFLAGS += %s\\n' -w > kiln-execute.mk" in script
    assert "-f kiln-execute.mk" in script and "zend_execute.lo" not in scripts["SWITCH"]
    assert remote_cache.key(build, flagged, tools) != keys["SWITCH"]
    # CALL puts the release's generated VM back, from the pristine tree.
    assert f"PRISTINE={build.pristine}" in scripts["CALL"] and "zend_vm_execute.h" in scripts["CALL"]


def test_a_flavours_cflags_reach_its_script_and_its_cache_key():
    """A flavour that only changes C flags (e.g. -Oz for size) is another build: another
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
        **php.flavours, "default": dataclasses.replace(php.flavours["default"], cflags=("-Oz",))})
    plain, sized = (configure.render_script(build, tools, r) for r in (php, small))
    assert "CFLAGS='-O2 -g0'\n" in plain
    assert "CFLAGS='-O2 -g0 -Oz'\n" in sized
    assert remote_cache.key(build, php, tools) != remote_cache.key(build, small, tools)


def test_every_build_gets_a_fast_vm_and_only_fast_and_wordpress_pay_for_goto():
    """GOTO costs ~15 CPU-minutes and 10.9 GiB per cold build (docs/benchmarks.md): CI affords
    it once, for wordpress (whose front page is PHP execution once OPcache stays in a pool
    worker's memory); `fast` is built nightly; every other build, 7.4 included, gets the
    tail-calling VM, which compiles in seconds."""
    php = recipe.language("php")
    kinds = {flavour: php.vm_kind("8.2.32", flavour) for flavour in php.flavours}
    assert kinds == {"default": "TAILCALL", "small": "TAILCALL", "fast": "GOTO", "wordpress": "GOTO"}
    assert php.vm_kind("7.4.33", "default") == "TAILCALL"
    assert php.vm("8.2.32", "fast").execute_cflags == ("-w",)
    assert php.flavour_applies("fast", "8.2.32") and not php.flavour_applies("fast", "7.4.33")
