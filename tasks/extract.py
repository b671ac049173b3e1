"""extract: unpack each verified tarball into a pristine tree, refusing unsafe entries."""
from doit.tools import config_changed

from kiln import archive, atomic
from kiln.fetch import file_sha256
from kiln.layout import Build, source_archive

from . import LANGUAGE, php, user_errors


@user_errors
def _extract(tarball, build: Build, root: str):
    archive.extract(tarball, build.pristine, root)
    atomic.write_json(build.pristine_stamp, {"archive": tarball.name, "sha256": file_sha256(tarball)})


def task_php_extract():
    """Unpack a release into build-output/php/pristine/ (shared by every flavour)."""
    recipe = php()
    for version in recipe.versions:
        build = Build(LANGUAGE, version, "default")
        tarball = source_archive(recipe.source_name(version))
        root = recipe.archive_root.format(version=version)
        yield {
            "name": version,
            "actions": [(_extract, [tarball, build, root])],
            "file_dep": [tarball],
            "targets": [build.pristine_stamp],
            "uptodate": [config_changed({"root": root})],
            "doc": f"unpack {tarball.name}",
        }
