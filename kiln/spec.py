"""One build's specification: everything that decides its modules' bytes, computed once.

The recipe's part (variants, configure arguments, C flags, VM kind, libraries, patch series:
kiln/variants.py) and the machine's (the toolchain's identity, autoconf's version when the
series regenerates configure, Kiln's tail-calling VM rewrite, the shim and the templates), with
the hashes of every file among them. The wl-build script is rendered from it (tasks/configure.py),
the configure stage tracks it, the remote-cache key hashes it (kiln/remote_cache.py) and the
report shows it: they read one object, so they cannot disagree about what a build is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import goto_vm, library, native, patching, settings, tailcall_vm, toolchain, wasm_merge
from .errors import KilnError
from .fetch import file_sha256
from .layout import Build
from .variants import PREFIX, Resolved

# What Zend/zend_vm_gen.php writes; a CALL build restores the release's copies of them.
VM_FILES = ("zend_vm_opcodes.h", "zend_vm_opcodes.c", "zend_vm_execute.h", "zend_vm_handlers.h")


@dataclass(frozen=True)
class Spec:
    build: Build
    recipe: object                      # kiln.recipe.Recipe
    resolved: Resolved
    tools: toolchain.Toolchain
    series: tuple[tuple[str, str], ...]             # (patch, sha256), in order
    configure_patches: tuple[tuple[str, str], ...]  # those of them configure can see
    libraries: tuple[library.Library, ...]
    library_pins: tuple[tuple[str, str, str], ...]  # (name, version, sha256 of its recipe)
    autoconf: str | None                # named when the series regenerates configure
    tailcall: tailcall_vm.Tool
    goto: goto_vm.Tool
    native_php: str | None              # runs zend_vm_gen.php; None for CALL (not an input)
    shim: Path
    shim_hashes: dict[str, str]

    @property
    def version(self) -> str:
        return self.build.version

    @property
    def vm_kind(self) -> str:
        return self.resolved.vm_kind

    def cache_inputs(self) -> dict:
        """What decides the modules' bytes, without paths (builds are reproducible across folders)."""
        recipe, resolved = self.recipe, self.resolved
        return {
            "source_sha256": recipe.versions[self.version],
            "series": [list(p) for p in self.series],
            "shim": self.shim_hashes,
            "template": file_sha256(settings.TEMPLATES / "wl-build.sh.j2"),
            "configure": list(resolved.configure),
            "flavour_cflags": list(resolved.cflags),
            # Only where a variant asks for it, so the other builds keep their keys.
            **({"post_link": list(resolved.post_link)} if resolved.post_link else {}),
            "autoconf": self.autoconf,
            "make_targets": recipe.settings.get("make_targets", []),
            "vm": [resolved.vm_kind, list(resolved.execute_cflags)],
            # The TAILCALL VM is Kiln's rewrite of the generated one: its code is an input too.
            "tailcall_vm": self.tailcall.digest if resolved.vm_kind == "TAILCALL" else None,
            # So is the GOTO VM's edit; absent elsewhere, so the other builds keep their keys.
            **({"goto_vm": self.goto.digest} if resolved.vm_kind == "GOTO" else {}),
            "outputs": recipe.outputs,
            "toolchain": self.tools.identity(),
            "epoch": settings.source_date_epoch(),
            "libraries": [list(pin) for pin in self.library_pins],
            # Only where libraries are linked: the template cannot change the others.
            "library_template": (file_sha256(settings.TEMPLATES / "lib-build.sh.j2")
                                 if self.library_pins else None),
            "library_layout": library.INSTALL_LAYOUT if self.library_pins else None,
            # The collect stage joins these to the modules (kiln/wasm_merge.py); absent when
            # none, so the other builds' keys stay what they were.
            **({"merge": {"modules": {wat: file_sha256(recipe.folder / wat) for wat in resolved.merge},
                          "binaryen": wasm_merge.version(), "rewrite": wasm_merge.REWRITE}}
               if resolved.merge else {}),
        }

    def configure_args(self) -> list[str]:
        """The configure arguments as the script passes them: `{prefix:<library>}` becomes that
        library's installed folder, relative to the source tree where configure and make run:
        PHP records its configure command in the binary, and a relative path is the same in
        every checkout (the recipe's form, without paths, is what the cache key holds)."""
        prefixes = {lib.name: os.path.relpath(lib.prefix, self.build.src) for lib in self.libraries}
        return [PREFIX.sub(lambda m: prefixes[m.group(1)], arg) for arg in self.resolved.configure]

    def pkgconfig_libdir(self) -> str:
        """PKG_CONFIG_LIBDIR for configure: the libraries' pkg-config folders relative to the source
        tree, where configure runs. configure records this variable in the configure command PHP
        keeps in its binary, and the .pc files name their folders through ${pcfiledir}, so the
        flags pkg-config gives are relative too: the same bytes in every checkout."""
        return ":".join(os.path.relpath(lib.pkgconfig_dir, self.build.src) for lib in self.libraries)

    def summary(self) -> dict:
        """For people: the report's "spec" and `doit info`."""
        r = self.resolved
        return {"release": r.version, "flavour": r.flavour, "variants": list(r.variants),
                "configure": list(r.configure), "cflags": list(r.cflags), "vm_kind": r.vm_kind,
                "execute_cflags": list(r.execute_cflags), "post_link": list(r.post_link),
                "libraries": {name: version for name, version, _ in self.library_pins},
                "patches": [name for name, _ in self.series],
                "toolchain": f"{self.tools.name} {self.tools.version}", "autoconf": self.autoconf}

    def describe(self) -> str:
        """One line: php@8.2.32 +goto vm=GOTO."""
        r = self.resolved
        return " ".join([f"{self.recipe.name}@{r.version}", *(f"+{v}" for v in r.variants),
                         f"vm={r.vm_kind}"])


def native_php() -> str:
    """The host PHP that runs Zend/zend_vm_gen.php. Missing, the script still renders (the graph
    loads); the configure stage then stops with the one-line error."""
    try:
        return native.binary("cli")
    except KilnError:
        return "php"


_made: dict = {}


def of(build: Build, tools: toolchain.Toolchain, recipe=None) -> Spec:
    """The spec of one build with one toolchain, made once per process."""
    if recipe is None:
        from . import recipe as recipes
        recipe = recipes.language(build.language)
    key = (id(recipe), id(tools), build)
    if key not in _made:  # the recipe and toolchain are kept, so their ids stay theirs
        _made[key] = (recipe, tools, _make(build, tools, recipe))
    return _made[key][2]


def _make(build: Build, tools: toolchain.Toolchain, recipe) -> Spec:
    resolved = recipe.resolve(build.version, build.flavour)
    # With what they require (libpng needs zlib): pkg-config must find those too.
    libraries = tuple(library.with_requirements(resolved.libraries))
    shim = recipe.folder / "shim"
    return Spec(
        build=build, recipe=recipe, resolved=resolved, tools=tools,
        series=tuple((p.name, file_sha256(p.file)) for p in resolved.patches),
        configure_patches=tuple((p.name, file_sha256(p.file)) for p in resolved.patches
                                if patching.touches_configure(p.file)),
        libraries=libraries,
        library_pins=tuple((lib.name, lib.version, lib.fingerprint()) for lib in libraries),
        # Its version is named in the script, so another autoconf regenerates and rebuilds.
        autoconf=toolchain.autoconf_version() if resolved.regenerates_configure else None,
        tailcall=tailcall_vm.tool(),
        goto=goto_vm.tool(),
        native_php=native_php() if resolved.vm_kind != "CALL" else None,
        shim=shim,
        shim_hashes={p.name: file_sha256(p) for p in sorted(shim.iterdir()) if p.is_file()},
    )
