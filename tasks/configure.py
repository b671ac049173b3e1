"""configure: render the build's wl-build script, then run its configure step.

The script is where the toolchain, flags and configure arguments meet; its text
is this stage's tracked input, so any change to them reconfigures and rebuilds.
"""
import hashlib

from doit.tools import config_changed

from kiln import atomic, library, native, patching, process, settings, tailcall_vm, templating, toolchain
from kiln.errors import KilnError
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors

SHIM = php().folder / "shim"
# What Zend/zend_vm_gen.php writes; a CALL build restores the release's copies of them.
VM_FILES = ("zend_vm_opcodes.h", "zend_vm_opcodes.c", "zend_vm_execute.h", "zend_vm_handlers.h")


def libraries_of(build: Build) -> list[library.Library]:
    """The libraries the build's flavour links (lib_build:<name>), in recipe order."""
    return [library.get(name) for name in php().check_flavour(build.flavour).libraries]


def native_php() -> str:
    """The host PHP that runs Zend/zend_vm_gen.php (GOTO and TAILCALL VMs). Missing, the script
    still renders (the graph loads); _configure then stops with the one-line error."""
    try:
        return native.binary("cli")
    except KilnError:
        return "php"


def render_script(build: Build, tools: toolchain.Toolchain, recipe=None) -> str:
    recipe = recipe or php()
    # Its version is named in the script, so another autoconf regenerates and rebuilds.
    autoconf = toolchain.autoconf_version() if recipe.regenerates_configure(build.version, build.flavour) else None
    vm = recipe.vm(build.version, build.flavour)
    return templating.render(
        "wl-build.sh.j2",
        recipe=recipe,
        build=build,
        tools=tools,
        shim=SHIM,
        shim_sources=sorted(p.name for p in SHIM.glob("*.[cS]")),
        configure_args=recipe.configure_args(build.version, build.flavour),
        libraries=libraries_of(build),
        make_targets=recipe.settings.get("make_targets", []),
        vm_kind=vm.kind,
        execute_cflags=vm.execute_cflags,
        flavour_cflags=recipe.check_flavour(build.flavour).cflags,
        vm_files=VM_FILES,
        tailcall=tailcall_vm.tool(),
        native_php=native_php() if vm.kind != "CALL" else None,
        epoch=settings.source_date_epoch(),
        autoconf=autoconf,
    )


def configure_patches(build: Build) -> list[list[str]]:
    """The patches of the build's series that configure can see, with their contents' hash."""
    return [[p.name, file_sha256(p.file)] for p in php().patches_for(build.version, build.flavour)
            if patching.touches_configure(p.file)]


@user_errors
def _configure(build: Build, script_text: str, inputs: list):
    kind = php().vm_kind(build.version, build.flavour)
    if kind != "CALL":
        try:
            native.binary("cli")
        except KilnError as exc:
            raise KilnError(f"{build.id}: vm_kind {kind} runs Zend/zend_vm_gen.php with native PHP: {exc} "
                            "(or set the kind to CALL in languages/php/recipe.toml)") from None
    atomic.write_text(build.script, script_text, mode=0o755)
    process.run_logged([str(build.script), "configure"], build.logs / "configure.log",
                       f"configure {build.id}")
    # The stamp's bytes change whenever an input did, so make (which depends on it) reruns.
    digests = {str(path): file_sha256(path) for path in inputs}
    digests["wl-build"] = hashlib.sha256(script_text.encode()).hexdigest()
    atomic.write_json(build.state / "configured.json", digests)


def task_php_configure():
    """Render wl-build and run PHP's configure for wasm32-wasi."""
    try:
        tools = toolchain.current()
    except Exception as exc:  # no toolchain: the tasks exist, and fail saying why when run
        tools, problem = None, exc
    for build in builds():
        if tools is None:
            yield {"name": build.id, "actions": [user_errors(lambda p=problem: _raise(p))],
                   "doc": "configure (toolchain missing)"}
            continue
        try:
            script_text = render_script(build, tools)
        except KilnError as exc:  # e.g. autoconf missing: only this build fails, when run
            yield {"name": build.id, "actions": [user_errors(lambda p=exc: _raise(p))],
                   "doc": f"configure {build.id} (cannot: {exc})"}
            continue
        # A library's stamp changes whenever it is rebuilt: PHP is then reconfigured and relinked.
        inputs = [*sorted(SHIM.iterdir()), *(lib.stamp for lib in libraries_of(build))]
        yield {
            "name": build.id,
            "actions": [(_configure, [build, script_text, inputs])],
            "file_dep": inputs,
            # The patched tree is this stage's input only through what configure reads: a
            # series edit that touches C sources alone goes straight to make (which starts
            # clean), one that touches config.m4, configure or a template reconfigures.
            "task_dep": [f"php_patch:{build.id}"],
            "targets": [build.script, build.state / "configured.json", build.src / "Makefile"],
            "uptodate": [config_changed({"script": script_text,
                                         "configure_patches": configure_patches(build)})],
            "doc": f"configure {build.id} with {tools.name} {tools.version}",
        }


def _raise(problem):
    raise problem
