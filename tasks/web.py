"""php_web: the build's modules in a static site that runs them in a browser (kiln/web.py,
docs/web.md). Part of `php:<build>`: it copies files and builds nothing."""
from doit.exceptions import TaskFailed
from doit.tools import config_changed

from kiln import web, wordpress
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, php, refuse_command_line_only, user_errors


def targets(build: Build) -> list:
    folder = web.site_folder(build)
    return [folder / "index.html", folder / "site.json"]


@user_errors
def _web(build: Build, modules: dict):
    refuse_command_line_only(build, "browsers", f"the playground is for other flavours (doit php_web:{build.version})")
    manifest = web.make_site(build, modules)
    sizes = ", ".join(f"{m['file']} {m['bytes'] / 1e6:.2f} MB" for m in manifest["modules"].values())
    print(f"  {web.site_folder(build)}: {sizes}; serve the folder over http(s) (docs/web.md)")


def task_php_web():
    """The browser playground for each build (build-output/web/php-<build>/)."""
    try:
        identity = web.identity()
    except KilnError as exc:
        # No shim installed must not break the rest of the graph: the task says why.
        message = f"kiln: {exc}"
        for build in builds():
            yield {"name": build.id, "actions": [lambda m=message: TaskFailed(m)],
                   "targets": targets(build), "doc": f"browser site for {build.id} (unavailable: {exc})"}
        return
    for build in builds():
        modules = {name: build.module(name) for name in php().outputs}
        # The wordpress flavour's site carries the docroot: the wordpress_docroot stage makes it.
        docroot = [wordpress.docroot_stamp()] if web.has_wordpress(build) else []
        yield {
            "name": build.id,
            "actions": [(_web, [build, modules])],
            "file_dep": [*modules.values(), *web.site_templates(build), *web.shim_files(), *docroot],
            "targets": targets(build),
            "uptodate": [config_changed(identity)],
            "doc": f"browser playground for {build.id} (build-output/web/php-{build.id}/)",
            "clean": True,
        }
