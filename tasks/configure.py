"""configure: render the build's wl-build script from its spec, then run its configure step.

The script is where the toolchain, flags and configure arguments meet; its text
is this stage's tracked input, so any change to them reconfigures and rebuilds.
"""
import hashlib

from doit.tools import config_changed

from kiln import atomic, native, process, settings, spec, templating, toolchain
from kiln.errors import KilnError
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, user_errors


def render(s: spec.Spec) -> str:
    return templating.render(
        "wl-build.sh.j2",
        recipe=s.recipe,
        build=s.build,
        tools=s.tools,
        shim=s.shim,
        shim_sources=sorted(p.name for p in s.shim.glob("*.[cS]")),
        configure_args=s.configure_args(),
        libraries=s.libraries,
        pkgconfig_libdir=s.pkgconfig_libdir(),
        make_targets=s.recipe.settings.get("make_targets", []),
        vm_kind=s.vm_kind,
        execute_cflags=s.resolved.execute_cflags,
        flavour_cflags=s.resolved.cflags,
        # A flavour's -mcpu goes to the link too: zig cc builds wasi-libc for the -mcpu it links
        # with, and the toolchain's (in LDFLAGS, after CFLAGS) would bring tail calls back.
        flavour_ldflags=[flag for flag in s.resolved.cflags if flag.startswith("-mcpu=")],
        vm_files=spec.VM_FILES,
        tailcall=s.tailcall,
        goto=s.goto,
        native_php=s.native_php,
        epoch=settings.source_date_epoch(),
        autoconf=s.autoconf,
    )


def render_script(build: Build, tools: toolchain.Toolchain, recipe=None) -> str:
    return render(spec.of(build, tools, recipe))


@user_errors
def _configure(build: Build, script_text: str, inputs: list, summary: dict):
    kind = summary["vm_kind"]
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
    atomic.write_json(build.state / "spec.json", summary)  # what the report shows


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
            s = spec.of(build, tools)
            script_text = render(s)
        except KilnError as exc:  # e.g. autoconf missing: only this build fails, when run
            yield {"name": build.id, "actions": [user_errors(lambda p=exc: _raise(p))],
                   "doc": f"configure {build.id} (cannot: {exc})"}
            continue
        # A library's stamp changes whenever it is rebuilt: PHP is then reconfigured and relinked.
        inputs = [*sorted(s.shim.iterdir()), *(lib.stamp for lib in s.libraries)]
        yield {
            "name": build.id,
            "actions": [(_configure, [build, script_text, inputs, s.summary()])],
            "file_dep": inputs,
            # The patched tree is this stage's input only through what configure reads: a
            # series edit that touches C sources alone goes straight to make (which starts
            # clean), one that touches config.m4, configure or a template reconfigures.
            "task_dep": [f"php_patch:{build.id}"],
            "targets": [build.script, build.state / "configured.json", build.src / "Makefile"],
            "uptodate": [config_changed({"script": script_text,
                                         "configure_patches": [list(p) for p in s.configure_patches]})],
            "doc": f"configure {build.id} ({s.describe()}) with {tools.name} {tools.version}",
        }


def _raise(problem):
    raise problem
