"""lib_download / lib_build: the C libraries flavours link (libraries/<name>/recipe.toml).

`lib_download:<name>` fetches the Debian .orig tarball from the mirrors (no upstream URL:
scripts/fill-mirror fills a mirror through apt), sha256-pinned. `lib_build:<name>` unpacks it,
runs the rendered lib-build script (configure, compile with the wasm toolchain, install into a
staging folder) and swaps the result in as build-output/libs/<name>-<version>/, stamp last.

The rendered script is the tracked input, as for PHP's configure: it holds the toolchain's
identity and flags, so changing them rebuilds the libraries, and (through the stamp, a file_dep
of php_configure) reconfigures and rebuilds every flavour that links them.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from doit.tools import config_changed

from kiln import archive, atomic, fetch, library, patching, process, settings, templating, toolchain
from kiln.errors import KilnError
from kiln.layout import source_archive

from . import user_errors


def staging_dir(lib: library.Library) -> Path:
    return library.libs_dir() / f".{lib.id}.staging"


def render_script(lib: library.Library, tools: toolchain.Toolchain) -> str:
    deps = library.with_requirements(lib.requires)
    return templating.render("lib-build.sh.j2", lib=lib, deps=deps, tools=tools,
                             stage=staging_dir(lib), epoch=settings.source_date_epoch())


@user_errors
def _download(lib: library.Library, mirrors: list[str]):
    target = source_archive(lib.file)
    origin = fetch.fetch(lib.file, lib.sha256, target, [], mirrors)
    print(f"  {lib.file}: sha256 {lib.sha256[:16]}... matches the pin (from {origin})")


def _relocatable_pc(path: Path, prefix: Path) -> None:
    """Point a .pc file at its own folder (${pcfiledir}), so the tree can move; and make its
    private requirements public. Every library here is static only, so what a shared library
    would hide (libwebp's libsharpyuv, libpng's zlib) must be linked too, while PHP's configure
    asks pkg-config without --static."""
    text = path.read_text()
    text = re.sub(r"^prefix=.*$", "prefix=${pcfiledir}/../..", text, count=1, flags=re.M)
    text = text.replace(str(prefix), "${prefix}")
    for field in ("Requires", "Libs"):
        private = re.search(rf"^{field}\.private:(.*)$", text, flags=re.M)
        if private is None or not private.group(1).strip():
            continue
        text = re.sub(rf"^{field}\.private:.*\n?", "", text, flags=re.M)
        if re.search(rf"^{field}:", text, flags=re.M):
            text = re.sub(rf"^({field}:.*)$", lambda m: m.group(1).rstrip() + " " + private.group(1).strip(),
                          text, count=1, flags=re.M)
        else:
            text = text.rstrip("\n") + f"\n{field}: {private.group(1).strip()}\n"
    path.write_text(text)


@user_errors
def _build(lib: library.Library, script_text: str, jobs: int):
    tarball = source_archive(lib.file)
    archive.extract(tarball, lib.work, lib.root)
    for patch in lib.patches:
        patching.apply(lib.work, patch, lib.path)
        print(f"  applied {patch.name}")
    atomic.write_text(lib.script, script_text, mode=0o755)
    stage = staging_dir(lib)
    process.run_logged([str(lib.script), str(jobs)], lib.log, f"build {lib.id}")
    installed = stage / lib.prefix.relative_to("/")
    if not (installed / "lib").is_dir():
        raise KilnError(f"build {lib.id} installed no lib/ folder into {installed}: see {lib.log}")
    fresh = lib.prefix.with_name(f".{lib.id}.new")
    if fresh.exists():
        shutil.rmtree(fresh)
    os.replace(installed, fresh)
    shutil.rmtree(stage)
    # Keep what a static link needs: headers, archives, pkg-config files.
    for extra in ("bin", "share", "lib/cmake"):  # CMake's package files name absolute paths
        shutil.rmtree(fresh / extra, ignore_errors=True)
    for la in (fresh / "lib").glob("*.la"):
        la.unlink()
    for pc in (fresh / "lib" / "pkgconfig").glob("*.pc"):
        _relocatable_pc(pc, lib.prefix)
    files = {str(p.relative_to(fresh)): fetch.file_sha256(p)
             for p in sorted(fresh.rglob("*")) if p.is_file()}
    if not any(name.endswith(".a") for name in files) or not any(name.endswith(".pc") for name in files):
        raise KilnError(f"build {lib.id} installed no static library or no .pc file: see {lib.log}")
    atomic.write_json(fresh / lib.stamp.name, {
        "library": lib.name, "version": lib.version, "source": lib.file, "sha256": lib.sha256,
        "script_sha256": hashlib.sha256(script_text.encode()).hexdigest(),
        **({"patches": {p.name: fetch.file_sha256(p) for p in lib.patches}} if lib.patches else {}),
        "files": files})
    atomic.replace_dir(fresh, lib.prefix)
    for name in files:
        if name.endswith(".a"):
            print(f"  {lib.prefix / name}: {(lib.prefix / name).stat().st_size / 1e6:.2f} MB")


def library_builds() -> list[library.Library]:
    """Every library's plain build, and the variant builds (`libzip+crypto`) the languages'
    variants link, each after what it requires."""
    from kiln import recipe

    wanted = [lib.name for lib in library.all_libraries()]
    for path in sorted(recipe.LANGUAGES.glob("*/recipe.toml")):
        for variant in recipe.language(path.parent.name).variants.values():
            wanted += [spec for spec in variant.libraries if "+" in spec]
    builds: dict[str, library.Library] = {}
    for spec in wanted:
        for lib in library.with_requirements([spec]):
            builds.setdefault(lib.spec, lib)
    return list(builds.values())


def task_lib_download():
    """Fetch a library's Debian source tarball from the mirrors and check its sha256."""
    for lib in library.all_libraries():
        yield {
            "name": lib.name,
            # Mirrors are not an input: any origin that yields the pinned bytes is as good.
            "actions": [(_download, [lib, settings.mirrors()])],
            "targets": [source_archive(lib.file)],
            "uptodate": [config_changed({"file": lib.file, "sha256": lib.sha256})],
            "doc": f"fetch {lib.file}",
            "clean": True,
        }


def task_lib_build():
    """Build a library for wasm32-wasi into build-output/libs/<name>-<version>[+<variant>...]/."""
    try:
        tools = toolchain.current()
    except Exception as exc:  # no toolchain: the tasks exist, and fail saying why when run
        tools, problem = None, exc
    for lib in library_builds():
        if tools is None:
            yield {"name": lib.spec, "actions": [user_errors(lambda p=problem: _raise(p))],
                   "doc": f"build {lib.id} (toolchain missing)"}
            continue
        script_text = render_script(lib, tools)
        yield {
            "name": lib.spec,
            # Job count is not an input: it changes how fast, not what is built.
            "actions": [(_build, [lib, script_text, settings.jobs()])],
            # What it requires is built first; a rebuilt one rebuilds this one (its stamp).
            "file_dep": [source_archive(lib.file), *lib.patches,
                         *(dep.stamp for dep in library.with_requirements(lib.requires))],
            "targets": [lib.stamp],
            "uptodate": [config_changed({"script": script_text, "layout": library.INSTALL_LAYOUT})],
            "doc": f"build {lib.id} for wasm32-wasi ({tools.name} {tools.version})",
            "clean": True,
        }


def _raise(problem):
    raise problem
