"""Library recipes (libraries/<name>/recipe.toml), their build scripts, the wordpress flavour's
wiring into PHP's configure, the WordPress recipe and the flavour-specific image kind.
Fast: nothing is compiled or fetched."""
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from kiln import images, library, recipe, settings, smoke, toolchain, wordpress
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
        "sqlite", "zlib", "openssl", "libsodium", "libxml2", "libpng", "libjpeg-turbo", "libwebp",
        "freetype", "libzip+crypto", "bzip2")
    assert php.flavour_applies("wordpress", "8.2.32") and php.flavour_applies("wordpress", "7.4.33")
    assert not php.flavour_applies("wordpress", "7.4.32")
    assert "--with-pdo-sqlite" in php.configure_args("8.2.32", "wordpress")
    tools = fake_tools()
    script = configure.render_script(Build("php", "8.2.32", "wordpress"), tools)
    assert "export PKG_CONFIG_LIBDIR=" in script
    for lib in library.with_requirements(php.resolve("8.2.32", "wordpress").libraries):
        # Relative to the source tree: configure records PKG_CONFIG_LIBDIR in the binary.
        assert f"../../../libs/{lib.id}/lib/pkgconfig" in script and str(lib.pkgconfig_dir) not in script
    # ext/bz2 looks in a folder: the recipe's {prefix:bzip2} is the installed library's.
    assert "--with-bz2=../../../libs/bzip2-1.0.8 " in script   # the same in every checkout
    assert "--with-bz2={prefix:bzip2}" in php.configure_args("8.2.32", "wordpress")
    assert "PKG_CONFIG" not in configure.render_script(Build("php", "8.2.32", "default"), tools)


def test_smoke_checks_say_the_releases_and_variants_they_need_not_flavours(tmp_path):
    gd = {"name": "gd", "module": "php", "when": "@8.0: +gd ~goto"}
    assert smoke.applies(gd, "8.2.32", ("gd",))
    assert not smoke.applies(gd, "8.2.32", ("gd", "goto"))
    assert not smoke.applies(gd, "7.4.33", ("gd",))
    assert not smoke.applies(gd, "8.2.32")
    with pytest.raises(KilnError, match="smoke check 'bad'"):
        smoke.applies({"name": "bad", "module": "php", "when": "8.2"}, "8.2.32")
    checks = tmp_path / "checks.toml"
    checks.write_text('[[check]]\nname = "x"\nmodule = "php"\nflavours = ["wordpress"]\n')
    with pytest.raises(KilnError, match=r"unknown fields \['flavours'\]"):
        smoke.load_checks(checks)


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


# -- openssl and libsodium (issue 31) --

def test_openssl_and_libsodium_recipes_say_how_they_are_built():
    from tasks import library as library_tasks

    openssl = library.get("openssl")
    assert (openssl.style, openssl.version, openssl.package) == ("openssl", "3.5.7", "openssl=3.5.7-1~deb13u2")
    for option in ("no-asm", "no-threads", "no-shared", "no-dso", "no-engine", "no-module", "no-sock",
                   "no-async", "no-secure-memory", "no-ui-console", "--with-rand-seed=getrandom"):
        assert option in openssl.configure, option
    sodium = library.get("libsodium")
    assert sodium.style == "autoconf" and sodium.autoreconf and "--without-pthreads" in sodium.configure

    tools = fake_tools()
    script = library_tasks.render_script(openssl, tools)
    assert "perl ./Configure kiln-wasm32-wasi --config=kiln-wasm32-wasi.conf" in script
    assert 'bn_ops           => "BN_LLONG RC4_CHAR"' in script  # wasm32 is ILP32 with a 64-bit long long
    # Guest paths compiled in, and no compiler path or build folder in OpenSSL_version's text.
    assert "--prefix=/usr --libdir=lib --openssldir=/etc/ssl" in script
    assert "mkbuildinf.pl 'zig 0.0 (wasm32-wasi, Kiln)'" in script
    assert 'make install_dev DESTDIR="$STAGE/kiln-install"' in script
    assert "autoreconf -fi" in library_tasks.render_script(sodium, tools)
    assert "autoreconf" not in library_tasks.render_script(library.get("libxml2"), tools)


def test_the_openssl_style_needs_its_install_targets(tmp_path):
    path = write(tmp_path, "zlib", GOOD.replace('style = "chost"', 'style = "openssl"')
                 .replace('install = ["install"]\n', ''))
    with pytest.raises(KilnError, match="style 'openssl' needs install"):
        library.load(path)


def test_the_wordpress_flavour_has_openssl_and_sodium_and_the_no_sockets_patch():
    php = recipe.language("php")
    resolved = php.resolve("8.2.32", "wordpress")
    assert {"openssl", "libsodium"} <= set(resolved.libraries)
    assert {"--with-openssl", "--with-sodium"} <= set(php.configure_args("8.2.32", "wordpress"))
    patch = "0021-openssl-no-sockets-wasi.patch"
    assert patch in [p.file.name for p in resolved.patches]
    assert patch not in [p.file.name for p in php.resolve("8.2.32", "default").patches]
    assert "--with-openssl" not in php.configure_args("8.2.32", "default")


def _pkg_config(lib, *args):
    env = {**os.environ, "PKG_CONFIG_LIBDIR": str(lib.pkgconfig_dir), "PKG_CONFIG_PATH": ""}
    return subprocess.run(["pkg-config", *args], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


CRYPTO_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sodium.h>

int main(void) {
    unsigned char digest[32], a[32] = {0}, b[32] = {0};
    unsigned int length = 0;
    EVP_Digest("abc", 3, digest, &length, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < length; i++) printf("%02x", digest[i]);
    printf("\n%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("%s\n", OpenSSL_version(OPENSSL_CFLAGS));
    /* Seeded from WASI's random_get: two draws succeed and differ. */
    printf("rand %d %d %d\n", RAND_bytes(a, 32), RAND_bytes(b, 32), memcmp(a, b, 32) != 0);
    if (sodium_init() < 0) return 2;
    randombytes_buf(a, 32);
    crypto_generichash(digest, 32, (const unsigned char *) "abc", 3, NULL, 0);
    for (int i = 0; i < 32; i++) printf("%02x", digest[i]);
    printf("\nsodium %s %d\n", sodium_version_string(), memcmp(a, b, 32) != 0);
    return 0;
}
"""


@pytest.mark.slow
def test_openssl_and_libsodium_build_link_and_run_in_wasmtime(tmp_path):
    """lib_build:openssl and lib_build:libsodium for real, then a program linked against both
    through their pkg-config files runs under Wasmtime: the digests are right and the random
    generators draw from WASI's random_get."""
    from tests.doit_run import build
    from kiln import runner

    build("lib_build:openssl", "lib_build:libsodium")
    openssl, sodium = library.get("openssl"), library.get("libsodium")
    for lib in (openssl, sodium):
        assert lib.stamp.is_file()
        for pc in lib.pkgconfig_dir.glob("*.pc"):
            assert str(settings.build_output()) not in pc.read_text(), pc  # relocatable
    assert {"libcrypto.a", "libssl.a"} <= {p.name for p in (openssl.prefix / "lib").iterdir()}
    libcrypto = (openssl.prefix / "lib" / "libcrypto.a").read_bytes()
    assert str(settings.ROOT).encode() not in libcrypto
    assert str(settings.build_output()).encode() not in libcrypto

    tools = toolchain.current()
    (tmp_path / "crypto.c").write_text(CRYPTO_PROGRAM)
    module = tmp_path / "crypto.wasm"
    flags = _pkg_config(openssl, "--static", "--cflags", "--libs", "libcrypto")
    flags += _pkg_config(sodium, "--static", "--cflags", "--libs", "libsodium")
    subprocess.run([*tools.cc, *tools.cflags, *tools.cppflags, str(tmp_path / "crypto.c"), *flags,
                    *tools.ldflags, *tools.libs, "-o", str(module)],
                   check=True, env={**os.environ, **tools.env})
    result = runner.run(module, ["crypto"], timeout=120)
    lines = result.stdout.decode().splitlines()
    assert result.exit_code == 0, result.stderr
    assert lines[0] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert lines[1].startswith("OpenSSL 3.5.7 ")
    assert lines[2] == f"compiler: {tools.name} {tools.version} (wasm32-wasi, Kiln)"
    assert lines[3] == "rand 1 1 1"
    assert lines[4] == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"  # BLAKE2b-256
    assert lines[5] == "sodium 1.0.18 1"


def test_openssl_and_sodium_variants_resolve_for_7_4_too():
    """The lead widens the wordpress flavour to 7.4.33 later: its crypto variants must hold there
    (7.4 takes --with-openssl and --with-sodium too; patch 0018 for OpenSSL 3's headers)."""
    import dataclasses

    from kiln.variants import Flavour

    php = recipe.language("php")
    trial = Flavour(name="crypto74", line=0, variants=("openssl", "sodium"))
    php74 = dataclasses.replace(php, flavours={**php.flavours, "crypto74": trial})
    resolved = php74.resolve("7.4.33", "crypto74")
    assert resolved.libraries == ("openssl", "libsodium")
    assert resolved.configure[-2:] == ("--with-openssl", "--with-sodium")
    names = [p.file.name for p in resolved.patches]
    assert names[-3:-1] == ["0021-openssl-no-sockets-wasi.patch", "0022-openssl3-sslv23-padding-7.4.patch"]
    assert "0022-openssl3-sslv23-padding-7.4.patch" not in [
        p.file.name for p in php.resolve("8.2.32", "wordpress").patches]


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


CRYPTO = """
[variants.crypto]
description = "AES"
configure = ["--with-crypto"]
replaces = ["--static"]
requires = ["openssl"]
"""


def test_a_library_variant_is_a_build_of_its_own(tmp_path, monkeypatch):
    """`zlib+crypto`: the variant's arguments in place of those it replaces, what it requires
    added, and a folder, task name and fingerprint of its own."""
    monkeypatch.setattr(library, "LIBRARIES", tmp_path)
    monkeypatch.setattr(library, "_loaded", {})
    write(tmp_path, "zlib", GOOD + CRYPTO)
    write(tmp_path, "openssl", GOOD.replace('name = "zlib"', 'name = "openssl"'))
    plain, crypto = library.get("zlib"), library.get("zlib+crypto")
    assert (plain.spec, plain.id, plain.configure, plain.requires) == ("zlib", "zlib-1.3.1", ("--static",), ())
    assert (crypto.spec, crypto.id, crypto.configure, crypto.requires) == (
        "zlib+crypto", "zlib-1.3.1+crypto", ("--with-crypto",), ("openssl",))
    assert crypto.prefix.name == "zlib-1.3.1+crypto" and crypto.fingerprint() != plain.fingerprint()
    assert [lib.spec for lib in library.with_requirements(["zlib+crypto"])] == ["openssl", "zlib+crypto"]
    with pytest.raises(KilnError, match=r"has no variant 'simd' \(it declares: crypto\): fix the name"):
        library.get("zlib+simd")
    with pytest.raises(KilnError, match="one build links both zlib and zlib\\+crypto"):
        library.with_requirements(["zlib", "zlib+crypto"])


@pytest.mark.parametrize("variant, message", [
    (CRYPTO.replace('replaces = ["--static"]', 'replaces = ["--shared"]'), "replaces '--shared', which is not in"),
    (CRYPTO.replace('requires = ["openssl"]', 'requires = ["nothing"]'), "not another library with a recipe"),
    (CRYPTO + 'patches = ["x"]\n', "unknown key(s) patches"),
    (CRYPTO.replace('configure = ["--with-crypto"]', 'defines = ["WITH_AES"]'), "must start with -D or -U"),
])
def test_library_variant_mistakes_name_the_line(tmp_path, variant, message):
    path = write(tmp_path, "zlib", GOOD + variant)
    with pytest.raises(KilnError) as error:
        library.load(path)
    assert message in str(error.value) and str(error.value).startswith(f"{path}:16:"), str(error.value)


def test_zip_links_libzip_with_aes_through_openssl_in_a_task_of_its_own():
    from tasks import library as library_tasks

    libzip = library.get("libzip+crypto")
    assert "-DENABLE_OPENSSL=ON" in libzip.configure and "-DENABLE_OPENSSL=OFF" not in libzip.configure
    assert libzip.requires == ("zlib", "openssl")
    task = next(t for t in library_tasks.task_lib_build() if t["name"] == "libzip+crypto")
    assert library.get("openssl").stamp in task["file_dep"] and task["targets"] == [libzip.stamp]
    assert "-DENABLE_OPENSSL=OFF" in library.get("libzip").configure   # the plain build keeps its own


def test_a_language_variant_naming_an_undeclared_library_variant_is_a_recipe_error(tmp_path):
    source = recipe.LANGUAGES / "php" / "recipe.toml"
    text = source.read_text().replace('libraries = ["libzip+crypto"]', 'libraries = ["libzip+aes"]')
    path = tmp_path / "php" / "recipe.toml"
    path.parent.mkdir()
    path.write_text(text)
    for item in (recipe.LANGUAGES / "php").iterdir():   # patches, fibers/: beside the recipe
        if item.name != "recipe.toml":
            (path.parent / item.name).symlink_to(item)
    line = text.splitlines().index('libraries = ["libzip+aes"]') + 1
    with pytest.raises(KilnError) as error:
        recipe.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}:") and "links 'libzip+aes'" in message and "no variant 'aes'" in message, message
    assert int(message.split(":")[1]) in range(line - 3, line + 1)
