"""Library recipes (libraries/<name>/recipe.toml), their build scripts, the wordpress flavour's
wiring into PHP's configure, the WordPress recipe and the flavour-specific image kind.
Fast: nothing is compiled or fetched."""
import textwrap
from pathlib import Path

import pytest

from kiln import images, library, recipe, smoke, toolchain, wordpress
from kiln.errors import KilnError
from kiln.layout import Build

SHA = "b" * 64


def write(tmp_path, name, body):
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "recipe.toml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = f"""\
name = "zlib"
version = "1.3.1"

[source]
package = "zlib"
file = "zlib_1.3.1.orig.tar.gz"
sha256 = "{SHA}"
root = "zlib-1.3.1"

[build]
style = "chost"
configure = ["--static"]
make = ["libz.a"]
install = ["install"]
"""


def test_the_three_libraries_load_with_debian_names_and_no_host():
    names = library.known()
    assert {"sqlite", "zlib", "libxml2"} <= set(names)
    for lib in library.all_libraries():
        assert "://" not in lib.path.read_text()  # the mirror supplies the file
        assert lib.file.startswith(lib.package.split("=")[0] + "_") and ".orig.tar." in lib.file
    sqlite = library.get("sqlite")
    assert sqlite.style == "amalgamation" and sqlite.pkgconfig_name == "sqlite3"
    assert "-DSQLITE_DQS=0" not in sqlite.defines  # WordPress's plugin needs double-quoted strings
    assert '-DSQLITE_DEFAULT_UNIX_VFS="unix-dotfile"' in sqlite.defines
    assert library.get("libxml2").wrap_config_sub


def test_a_good_recipe_loads(tmp_path):
    lib = library.load(write(tmp_path, "zlib", GOOD))
    assert (lib.id, lib.style, lib.configure) == ("zlib-1.3.1", "chost", ("--static",))
    assert lib.prefix.name == "zlib-1.3.1" and lib.pkgconfig_dir == lib.prefix / "lib" / "pkgconfig"


@pytest.mark.parametrize("old, new, message, line", [
    ('style = "chost"', 'style = "meson"', "style must be one of", 11),
    ('style = "chost"', 'style = "cmake"', "style 'cmake' takes no install, make", 14),
    ('version = "1.3.1"', 'version = "1.3.1"\nrequires = ["nothing-here"]', "not another library", 3),
    ('version = "1.3.1"', 'version = "1.3.1"\nrequires = ["zlib"]', "not another library", 3),
    ('version = "1.3.1"', 'version = "1.3.1"\npatches = ["0001-none.patch"]', "is not a file in", 3),
    ('package = "zlib"', 'package = "zlib=1.3 1"', "not a Debian source package name", 5),
    ('sha256 = "' + SHA + '"', 'sha256 = "abc"', "sha256 must be 64", 7),
    ('file = "zlib_1.3.1.orig.tar.gz"', 'file = "https://example.invalid/z.tgz"', "not a URL", 6),
    ('root = "zlib-1.3.1"', 'root = "../up"', "without '..'", 8),
    ('make = ["libz.a"]', 'generate = ["x"]', "takes no generate", 13),
    ('install = ["install"]\n', '', "needs install", 10),
    ('name = "zlib"', 'name = "other"', "must match the recipe's folder", 1),
])
def test_mistakes_name_the_file_and_line(tmp_path, old, new, message, line):
    path = write(tmp_path, "zlib", GOOD.replace(old, new))
    with pytest.raises(KilnError) as error:
        library.load(path)
    assert message in str(error.value)
    assert str(error.value).startswith(f"{path}:{line}:"), str(error.value)


def test_an_unknown_library_says_which_exist():
    with pytest.raises(KilnError, match="known libraries are .*sqlite"):
        library.get("no-such-library")


def fake_tools():
    return toolchain.Toolchain(name="zig", version="0.0", cc=["zig", "cc", "-target", "wasm32-wasi"],
                               ar=["zig", "ar"], ranlib=["zig", "ranlib"], nm=["nm"],
                               cflags=["-O2"], cppflags=["-D_WASI_EMULATED_MMAN"], ldflags=[], libs=[])


def test_build_scripts_carry_the_toolchain_and_the_recipe():
    from tasks import library as library_tasks

    tools = fake_tools()
    sqlite = library_tasks.render_script(library.get("sqlite"), tools)
    assert "make -j\"$JOBS\" sqlite3.c" in sqlite
    assert "'-DSQLITE_DEFAULT_UNIX_VFS=\"unix-dotfile\"'" in sqlite  # one word, quotes kept
    assert "Name: sqlite3" in sqlite
    libxml2 = library_tasks.render_script(library.get("libxml2"), tools)
    assert "config.sub.upstream" in libxml2 and "--host=wasm32-wasi" in libxml2
    assert "make -C include install DESTDIR=\"$STAGE\"" in libxml2
    # A different toolchain flag is a different script: the library is rebuilt.
    other = toolchain.Toolchain(**{**tools.__dict__, "cflags": ["-O3"]})
    assert library_tasks.render_script(library.get("zlib"), other) != \
        library_tasks.render_script(library.get("zlib"), tools)


def test_the_wordpress_flavour_links_the_libraries_through_pkg_config():
    from tasks import configure

    php = recipe.language("php")
    assert php.resolve("8.2.32", "wordpress").libraries == (
        "sqlite", "zlib", "libxml2", "libpng", "libjpeg-turbo", "libwebp", "freetype", "libzip", "bzip2")
    assert php.flavour_applies("wordpress", "8.2.32") and php.flavour_applies("wordpress", "7.4.33")
    assert not php.flavour_applies("wordpress", "7.4.32")
    assert "--with-pdo-sqlite" in php.configure_args("8.2.32", "wordpress")
    tools = fake_tools()
    script = configure.render_script(Build("php", "8.2.32", "wordpress"), tools)
    assert "export PKG_CONFIG_LIBDIR=" in script
    for lib in library.with_requirements(php.resolve("8.2.32", "wordpress").libraries):
        assert str(lib.pkgconfig_dir) in script
    # ext/bz2 looks in a folder: the recipe's {prefix:bzip2} is the installed library's.
    assert "--with-bz2=../../../libs/bzip2-1.0.8 " in script   # the same in every checkout
    assert "--with-bz2={prefix:bzip2}" in php.configure_args("8.2.32", "wordpress")
    assert "PKG_CONFIG" not in configure.render_script(Build("php", "8.2.32", "default"), tools)


def test_smoke_checks_can_be_limited_to_flavours_and_variants():
    check = {"name": "x", "module": "php", "flavours": ["wordpress"], "when": "@8.2"}
    assert smoke.applies(check, "8.2.32", "wordpress")
    assert not smoke.applies(check, "8.2.32", "default")
    assert not smoke.applies(check, "7.4.33", "wordpress")
    gd = {"name": "gd", "module": "php", "when": "@8.0: +gd ~goto"}
    assert smoke.applies(gd, "8.2.32", "any", ("gd",))
    assert not smoke.applies(gd, "8.2.32", "any", ("gd", "goto"))
    assert not smoke.applies(gd, "7.4.33", "any", ("gd",))
    assert not smoke.applies(gd, "8.2.32", "any")
    with pytest.raises(KilnError, match="smoke check 'bad'"):
        smoke.applies({"name": "bad", "module": "php", "when": "8.2"}, "8.2.32")


def test_a_flavour_turns_on_where_available_variants_only_for_their_releases():
    php = recipe.language("php")
    old, new = php.resolve("7.4.33", "wordpress"), php.resolve("8.2.32", "wordpress")
    assert {"iconv", "opcache", "goto"} <= set(new.variants)
    assert not {"iconv", "opcache", "goto"} & set(old.variants)
    assert (old.vm_kind, new.vm_kind) == ("TAILCALL", "GOTO")
    assert "--without-iconv" in old.configure and "--with-iconv" in new.configure
    assert {"gd", "zip", "bz2", "exif", "phar"} <= set(old.variants) & set(new.variants)


def test_the_wordpress_recipe_and_config():
    wp = wordpress.load()
    assert wp.version == "6.4.5" and wp.npm.endswith("@0.9.19") and len(wp.sha256) == 64
    assert "wp-content/database/.ht.sqlite" in wp.remove
    config = wordpress.render_config(wp)
    for needle in ("'DB_DIR'", "'DISABLE_WP_CRON', true", "'WP_HTTP_BLOCK_EXTERNAL', true",
                   "'FS_METHOD', 'direct'", "wp-settings.php"):
        assert needle in config
    assert "put your unique phrase here" not in config


def test_the_wordpress_flavour_gets_its_own_server_image():
    default, wp = Build("php", "8.2.32", "default"), Build("php", "8.2.32", "wordpress")
    assert images.kinds_for(default) == ["cli", "cli-aot", "server"]
    assert images.kinds_for(wp) == ["cli", "cli-aot", "server-wordpress"]
    assert images.tag(wp, "server-wordpress", "php-wasm") == "php-wasm:8.2.32-server-wordpress"
    assert images.tag(wp, "cli", "php-wasm") == "php-wasm:8.2.32-cli-wordpress"
    text, _ = images.render(wp, "server-wordpress")
    assert "VOLUME /docroot/wp-content" in text and 'kiln.server="cgi"' in text
    assert images.inputs(wp, "server-wordpress")[-1] == wordpress.docroot_stamp()


def test_a_library_is_built_after_what_it_requires_and_finds_only_that():
    from tasks import library as library_tasks

    assert [lib.name for lib in library.with_requirements(["libzip", "libpng"])] == ["zlib", "libzip", "libpng"]
    libzip = library.get("libzip")
    script = library_tasks.render_script(libzip, fake_tools())
    zlib = library.get("zlib")
    assert f"export PKG_CONFIG_LIBDIR={zlib.pkgconfig_dir}" in script
    assert f"set(CMAKE_FIND_ROOT_PATH {zlib.prefix})" in script
    assert libzip.patches and libzip.patches[0].name.startswith("0001-")
    task = next(t for t in library_tasks.task_lib_build() if t["name"] == "libzip")
    assert zlib.stamp in task["file_dep"] and libzip.patches[0] in task["file_dep"]
    # A patch is part of what the recipe decides, so of the PHP builds' remote-cache key.
    assert libzip.fingerprint() != library.get("zlib").fingerprint()


def test_a_requirement_cycle_is_a_recipe_error(tmp_path, monkeypatch):
    monkeypatch.setattr(library, "LIBRARIES", tmp_path)
    monkeypatch.setattr(library, "_loaded", {})
    for name, other in (("a", "b"), ("b", "a")):
        write(tmp_path, name, GOOD.replace('name = "zlib"', f'name = "{name}"\nrequires = ["{other}"]'))
    with pytest.raises(KilnError, match=r"cycle \(a -> b -> a\)"):
        library.with_requirements(["a"])


def test_installed_pkgconfig_files_are_relocatable_and_static(tmp_path):
    """Every library is static: what a .pc file keeps private (for shared linking) is made public,
    since PHP's configure asks pkg-config without --static."""
    from tasks.library import _relocatable_pc

    pc = tmp_path / "libwebp.pc"
    pc.write_text("prefix=/out/libs/libwebp-1.5.0\nlibdir=/out/libs/libwebp-1.5.0/lib\n"
                  "Name: libwebp\nRequires.private: libsharpyuv\nLibs: -L${libdir} -lwebp\n"
                  "Libs.private: -lm\n")
    _relocatable_pc(pc, Path("/out/libs/libwebp-1.5.0"))
    text = pc.read_text()
    assert "prefix=${pcfiledir}/../.." in text and "libdir=${prefix}/lib" in text
    assert "Requires: libsharpyuv" in text and "Libs: -L${libdir} -lwebp -lm" in text
    assert ".private" not in text
