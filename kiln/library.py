"""Load a library recipe (libraries/<name>/recipe.toml) and check it against its schema.

Libraries (SQLite, zlib, libxml2, ...) are C libraries a flavour of a language links
statically. Each is built for wasm32-wasi by `lib_build:<name>` and installed under
build-output/libs/<name>-<version>/ (include/, lib/, lib/pkgconfig/), where the language's
configure finds it through pkg-config. They live in libraries/, not languages/: they produce
no module of their own and have one version each, the one the flavours are tested with.

A library may declare variants, Spack's way (`[variants.crypto]`: configure arguments, defines,
libraries it then requires, arguments of [build] it takes out): a build names them after the
library, `libzip+crypto`, and gets a folder, a task and a fingerprint of its own. Variants are
off unless named; a language's variant asks for `libraries = ["libzip+crypto"]`.

Like language recipes, every mistake is reported as `file:line: what is wrong`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from . import settings
from .errors import KilnError
from .recipe import _Checker, _expect, _string_list, check_keys, read_toml
from .versions import Version

LIBRARIES = settings.ROOT / "libraries"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_+.-]*$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9_+.,~/-]+$")
# A Debian source package, optionally pinned to a version (`libzip=1.7.3-1`) where the newest one
# the archive lists answers 404 for its files (../shared/notes/sources.md).
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")   # an ISO 639 language code, as ICU names its locales

# How each build style is driven (templates/lib-build.sh.j2) and the [build] keys it takes.
STYLES = {
    # autoconf: ./configure --host=wasm32-wasi --build=<native> --prefix=... --enable-static ...
    "autoconf": {"configure", "make", "install", "wrap_config_sub", "autoreconf", "defines"},
    # a hand-written configure that takes the target from CHOST (zlib)
    "chost": {"configure", "make", "install", "defines"},
    # a native build generates single-file sources, compiled with the wasm toolchain (SQLite)
    "amalgamation": {"generate", "sources", "headers", "library", "defines"},
    # CMake with a generated toolchain file (libjpeg-turbo, libzip): `configure` are -D options
    "cmake": {"configure", "defines"},
    # a plain Makefile driven with CC/AR/RANLIB/CFLAGS on make's command line; Kiln installs
    # the headers and lib<library>.a and writes the .pc file (bzip2)
    "make": {"make", "headers", "library", "defines"},
    # -- style "openssl" (issue 31) --
    # OpenSSL's own perl Configure, with a wasm32-wasi target Kiln writes (lib-build.sh.j2):
    # `configure` are Configure's options (no-asm, no-threads, ...), `install` make targets.
    "openssl": {"configure", "make", "install", "defines"},
    # -- style "icu" (issue 32) --
    # ICU's cross build: a native ICU built first for its tools (icupkg, genccode), then ICU's
    # configure for wasm32-wasi with --with-cross-build; `configure` are that configure's options.
    # Its data (icudt<major>l.dat, shipped prebuilt in the tarball) is linked in as libicudata.a,
    # cut down to `data_locales` (language codes: their locales' data stay, root and everything
    # that is no locale's always do); without `data_locales`, every locale's.
    "icu": {"configure", "defines", "data_locales"},
}
_REQUIRED = {
    "autoconf": {"make", "install"},
    "chost": {"make", "install"},
    "amalgamation": {"generate", "sources", "headers", "library"},
    "cmake": set(),
    "make": {"make", "headers", "library"},
    "openssl": {"configure", "install"},
    "icu": set(),
}
# What tasks/library.py does to an installed tree after the build script (files kept, .pc files
# made relocatable and static): raise it when that changes, so every library is installed again.
INSTALL_LAYOUT = 2
# Styles whose libraries are C++: a language build linking one compiles its own C++ sources
# (PHP's ext/intl) with the toolchain's C++ driver (templates/wl-build.sh.j2).
CPLUSPLUS = {"icu"}
# Styles whose .pc file Kiln writes (the others install their build's own).
WRITES_PKGCONFIG = {"amalgamation", "make"}


@dataclass(frozen=True)
class LibraryVariant:
    """A feature of a library that builds may have or not ([variants.<name>] in its recipe)."""
    name: str
    description: str = ""
    configure: tuple[str, ...] = ()   # [build] configure arguments it adds
    defines: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()    # libraries (specs) it links
    replaces: tuple[str, ...] = ()    # [build] configure arguments it takes out (its own say otherwise)


@dataclass(frozen=True)
class Library:
    name: str
    path: Path
    version: str
    description: str
    package: str          # Debian source package[=version] carrying the tarball (scripts/fill-mirror)
    file: str             # the tarball's name in the mirror and in build-output/sources
    sha256: str
    root: str             # the tarball's top folder
    style: str
    configure: tuple[str, ...] = ()
    make: tuple[str, ...] = ()
    install: tuple[str, ...] = ()
    wrap_config_sub: bool = False
    autoreconf: bool = False   # a git snapshot without configure (Debian's libsodium): generate it
    defines: tuple[str, ...] = ()
    generate: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    library: str = ""
    pkgconfig_name: str = ""
    pkgconfig_description: str = ""
    data_locales: tuple[str, ...] = ()   # style icu: the languages whose locale data is linked in
    requires: tuple[str, ...] = ()   # libraries it links (their recipes): built first, found first
    patches: tuple[Path, ...] = ()   # libraries/<name>/patches/<file>, applied in order (-p1)
    declared: tuple[LibraryVariant, ...] = ()   # the recipe's [variants.*]
    variants: tuple[str, ...] = ()   # those this build has, sorted (already applied to the above)

    @property
    def spec(self) -> str:
        """How a language recipe names this build: `libzip`, `libzip+crypto`."""
        return self.name + "".join(f"+{v}" for v in self.variants)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.version}" + "".join(f"+{v}" for v in self.variants)

    @property
    def cplusplus(self) -> bool:
        return self.style in CPLUSPLUS

    def fingerprint(self) -> str:
        """sha256 of what the recipe folder decides for this build: the recipe, its patches if it
        has any, the variants this build has."""
        from .fetch import file_sha256
        if not self.patches and not self.variants:
            return file_sha256(self.path)
        digest = hashlib.sha256(file_sha256(self.path).encode())
        for patch in self.patches:
            digest.update(f"{patch.name}:{file_sha256(patch)}".encode())
        for variant in self.variants:
            digest.update(f"+{variant}".encode())
        return digest.hexdigest()

    def with_variants(self, names) -> Library:
        """This library built with the variants `names` (any order): their arguments and
        defines after the recipe's, the [build] arguments they replace taken out, their
        required libraries added."""
        chosen = tuple(sorted(set(names)))
        declared = {v.name: v for v in self.declared}
        for name in chosen:
            if name not in declared:
                offered = ", ".join(sorted(declared)) or "none"
                raise KilnError(f"{self.path}: library {self.name} has no variant {name!r} (it declares: "
                                f"{offered}): fix the name in `{self.name}+{name}` or declare "
                                f"[variants.{name}] in its recipe")
        picked = [declared[name] for name in chosen]
        replaced = {arg for v in picked for arg in v.replaces}
        return dataclasses.replace(
            self, variants=chosen,
            configure=tuple(a for a in self.configure if a not in replaced)
            + tuple(a for v in picked for a in v.configure),
            defines=self.defines + tuple(d for v in picked for d in v.defines),
            requires=tuple(dict.fromkeys(self.requires + tuple(r for v in picked for r in v.requires))))

    # -- where its artifacts live (build-output/libs/) --

    @property
    def prefix(self) -> Path:
        """The installed library: include/, lib/, lib/pkgconfig/ (swapped in whole)."""
        return libs_dir() / self.id

    @property
    def pkgconfig_dir(self) -> Path:
        return self.prefix / "lib" / "pkgconfig"

    @property
    def stamp(self) -> Path:
        """Written last inside the installed tree: what it was built from, and its files' sha256."""
        return self.prefix / ".kiln-installed.json"

    @property
    def work(self) -> Path:
        """The unpacked source tree the build runs in (replaced by every build)."""
        return libs_dir() / "work" / self.id

    @property
    def script(self) -> Path:
        return libs_dir() / "scripts" / f"{self.id}.sh"

    @property
    def log(self) -> Path:
        return libs_dir() / "logs" / f"{self.id}.log"


def libs_dir() -> Path:
    return settings.build_output() / "libs"


def _relative(check: _Checker, value: str, what: str, *needles: str) -> str:
    """A file or folder inside the source tree: relative, no `..`, nothing a shell would expand."""
    if not _PATH_CHARS.match(value) or value.startswith("/") or ".." in value.split("/"):
        check.fail(f"{what} {value!r} must be a relative path without '..'", *needles)
    return value


def load(path: Path | str) -> Library:
    path = Path(path)
    data, check = read_toml(path, "library recipe")
    check_keys(check, data, {"name", "version", "description", "requires", "patches", "source",
                             "build", "pkgconfig", "variants"}, ("name", "version", "source", "build"))

    name = _expect(check, data["name"], str, "name", "name")
    if not _NAME.match(name):
        check.fail(f"library name {name!r} must be lowercase letters, digits, + . _ or -", "name")
    if name != path.parent.name:
        check.fail(f"name {name!r} must match the recipe's folder {path.parent.name!r}", "name")
    version = _expect(check, data["version"], str, "version", "version")
    try:
        Version.parse(version)
    except ValueError as exc:
        check.fail(str(exc), "version")
    description = _expect(check, data.get("description", ""), str, "description", "description")
    requires = _string_list(check, data.get("requires", []), "requires", "requires")
    _check_requires(check, name, requires, "requires", "requires")

    patches = []
    for file in _string_list(check, data.get("patches", []), "patches", "patches"):
        patch = path.parent / "patches" / file
        if "/" in file or not patch.is_file():
            check.fail(f"patch {file!r} is not a file in {path.parent / 'patches'}: add it or take it "
                       "out of `patches`", "patches")
        patches.append(patch)

    source = _expect(check, data["source"], dict, "[source]", "[source]")
    unknown = set(source) - {"package", "file", "sha256", "root"}
    if unknown:
        check.fail(f"[source]: unknown key(s) {', '.join(sorted(unknown))} "
                   f"(allowed: file, package, root, sha256)", "[source]", sorted(unknown)[0])
    for key in ("package", "file", "sha256", "root"):
        if key not in source:
            check.fail(f"[source] needs {key!r}", "[source]")
        _expect(check, source[key], str, f"[source] {key}", "[source]", key)
    if "://" in source["file"] or "/" in source["file"]:
        check.fail("[source] file is a file name (the mirror supplies it), not a URL or path",
                   "[source]", "file")
    if not _SHA256.match(source["sha256"]):
        check.fail("[source] sha256 must be 64 lowercase hex digits", "[source]", "sha256")
    if not _PACKAGE.match(source["package"]):
        check.fail(f"[source] package {source['package']!r} is not a Debian source package name "
                   "(name, or name=version to pin a version)", "[source]", "package")
    _relative(check, source["root"], "[source] root", "[source]", "root")

    build = _expect(check, data["build"], dict, "[build]", "[build]")
    style = build.get("style")
    if style not in STYLES:
        check.fail(f"[build] style must be one of {', '.join(STYLES)}, not {style!r}", "[build]", "style")
    unknown = set(build) - STYLES[style] - {"style"}
    if unknown:
        check.fail(f"[build] style {style!r} takes no {', '.join(sorted(unknown))} "
                   f"(it takes {', '.join(sorted(STYLES[style]))})", "[build]", sorted(unknown)[0])
    missing = _REQUIRED[style] - set(build)
    if missing:
        check.fail(f"[build] style {style!r} needs {', '.join(sorted(missing))}", "[build]")
    lists = {}
    for key in ("configure", "make", "install", "defines", "generate", "sources", "headers",
                "data_locales"):
        lists[key] = _string_list(check, build.get(key, []), f"[build] {key}", "[build]", key)
    for key in ("generate", "sources", "headers"):
        for item in lists[key]:
            _relative(check, item, f"[build] {key} entry", "[build]", key)
    for define in lists["defines"]:
        if not define.startswith(("-D", "-U")):
            check.fail(f"[build] defines entry {define!r} must start with -D or -U", "[build]", "defines")
    for language in lists["data_locales"]:
        if not _LANGUAGE.match(language):
            check.fail(f"[build] data_locales entry {language!r} must be a language code (2 or 3 "
                       "lowercase letters: its locales, de_DE, de_AT, ..., are kept)",
                       "[build]", "data_locales")
    wrap = _expect(check, build.get("wrap_config_sub", False), bool, "[build] wrap_config_sub",
                   "[build]", "wrap_config_sub")
    autoreconf = _expect(check, build.get("autoreconf", False), bool, "[build] autoreconf",
                         "[build]", "autoreconf")
    library = _expect(check, build.get("library", ""), str, "[build] library", "[build]", "library")
    if style in WRITES_PKGCONFIG and not _NAME.match(library):
        check.fail(f"[build] library {library!r} must be a plain name (lib<name>.a)", "[build]", "library")

    pkgconfig = _expect(check, data.get("pkgconfig", {}), dict, "[pkgconfig]", "[pkgconfig]")
    unknown = set(pkgconfig) - {"name", "description"}
    if unknown:
        check.fail(f"[pkgconfig]: unknown key(s) {', '.join(sorted(unknown))}", "[pkgconfig]")
    if style in WRITES_PKGCONFIG and "name" not in pkgconfig:
        # The other styles install the .pc file their own build writes.
        check.fail(f"style {style!r} needs [pkgconfig] name (the .pc file Kiln writes)", "[build]")
    for key in ("name", "description"):
        _expect(check, pkgconfig.get(key, ""), str, f"[pkgconfig] {key}", "[pkgconfig]", key)

    declared = _load_variants(check, data.get("variants", {}), lists["configure"])

    return Library(
        declared=declared, name=name, path=path, version=version, description=description,
        package=source["package"], file=source["file"], sha256=source["sha256"], root=source["root"],
        style=style, configure=lists["configure"], make=lists["make"], install=lists["install"],
        wrap_config_sub=wrap, autoreconf=autoreconf, defines=lists["defines"], generate=lists["generate"],
        sources=lists["sources"], headers=lists["headers"], library=library,
        data_locales=lists["data_locales"],
        pkgconfig_name=pkgconfig.get("name", ""),
        pkgconfig_description=pkgconfig.get("description", description),
        requires=requires, patches=tuple(patches),
    )


def _check_requires(check: _Checker, name: str, requires, what: str, *needles: str) -> None:
    for other in requires:
        other_name = split_spec(other)[0]
        if other_name == name or not recipe_path(other_name).is_file():
            check.fail(f"{what} {other!r}, which is not another library with a recipe: add "
                       f"libraries/{other_name}/recipe.toml or take it out", *needles)


def _load_variants(check: _Checker, table, configure: tuple[str, ...]) -> tuple[LibraryVariant, ...]:
    table = _expect(check, table, dict, "[variants]", "[variants]")
    variants = []
    for vname, entry in table.items():
        at = (f"[variants.{vname}]",)
        if not re.match(r"^[a-z0-9][a-z0-9_-]*$", vname):
            check.fail(f"variant name {vname!r} must be lowercase letters, digits, - or _", *at)
        entry = _expect(check, entry, dict, f"[variants.{vname}]", *at)
        unknown = set(entry) - {"description", "configure", "defines", "requires", "replaces"}
        if unknown:
            check.fail(f"[variants.{vname}]: unknown key(s) {', '.join(sorted(unknown))} "
                       "(allowed: configure, defines, description, replaces, requires)", *at)
        lists = {key: _string_list(check, entry.get(key, []), f"[variants.{vname}] {key}", *at)
                 for key in ("configure", "defines", "requires", "replaces")}
        for define in lists["defines"]:
            if not define.startswith(("-D", "-U")):
                check.fail(f"[variants.{vname}] defines entry {define!r} must start with -D or -U", *at)
        for arg in lists["replaces"]:
            if arg not in configure:
                check.fail(f"[variants.{vname}] replaces {arg!r}, which is not in [build] configure: "
                           "fix it or take it out", *at)
        _check_requires(check, "", lists["requires"], f"[variants.{vname}] requires", *at)
        variants.append(LibraryVariant(
            name=vname, description=_expect(check, entry.get("description", ""), str, "description", *at),
            **lists))
    return tuple(variants)


_loaded: dict[str, Library] = {}


def split_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """`libzip+crypto` -> ("libzip", ("crypto",)): a library and the variants a build of it has."""
    name, *variants = spec.split("+")
    return name, tuple(sorted(set(variants)))


def recipe_path(name: str) -> Path:
    """Where the recipe of library `name` (or of the library a spec names) is, whether or not it exists."""
    return LIBRARIES / split_spec(name)[0] / "recipe.toml"


def known() -> list[str]:
    """Names of every library with a recipe."""
    return sorted(p.parent.name for p in LIBRARIES.glob("*/recipe.toml"))


def get(spec: str) -> Library:
    """One library build (`zlib`, `libzip+crypto`), its recipe loaded once per process."""
    if spec not in _loaded:
        name, variants = split_spec(spec)
        if variants:
            _loaded[spec] = get(name).with_variants(variants)
            return _loaded[spec]
        path = recipe_path(name)
        if not path.is_file():
            raise KilnError(f"unknown library {name!r}: known libraries are {', '.join(known())} "
                            f"(add libraries/{name}/recipe.toml to build another)")
        _loaded[name] = load(path)
    return _loaded[spec]


def all_libraries() -> list[Library]:
    return [get(name) for name in known()]


def with_requirements(specs) -> list[Library]:
    """The libraries named (`zlib`, `libzip+crypto`) and every library they require, each after
    what it requires (the order pkg-config paths and link lines want). A cycle, or one library
    asked for with two different sets of variants, is a recipe error."""
    ordered: list[Library] = []
    visiting: list[str] = []

    def visit(spec: str) -> None:
        name = split_spec(spec)[0]
        done = next((lib for lib in ordered if lib.name == name), None)
        if done is not None:
            if done.spec != get(spec).spec:
                raise KilnError(f"libraries/{name}/recipe.toml: one build links both {done.spec} and "
                                f"{get(spec).spec}: ask for the same variants everywhere")
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise KilnError(f"libraries/{name}/recipe.toml: `requires` makes a cycle ({cycle}): "
                            "take one of them out")
        visiting.append(name)
        lib = get(spec)
        for other in lib.requires:
            visit(other)
        visiting.pop()
        ordered.append(lib)

    for spec in specs:
        visit(spec)
    return ordered
