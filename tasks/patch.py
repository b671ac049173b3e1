"""patch: copy the pristine tree to a fresh build tree and apply the release's series.

Each build starts from a fresh copy, so a changed series never stacks on an
old one; the compiler cache keeps the rebuild that follows cheap.
"""
import shutil
import subprocess

from doit.tools import config_changed

from kiln import atomic, patching
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _patch(build: Build, series):
    staging = build.src.with_name(".src.staging")
    if staging.exists():
        shutil.rmtree(staging)
    build.root.mkdir(parents=True, exist_ok=True)
    # cp -a: several times faster than copytree on PHP's ~23,000 files. No hard links:
    # configure and patch would then write through into the pristine tree.
    subprocess.run(["cp", "-a", str(build.pristine), str(staging)], check=True)
    (staging / build.pristine_stamp.name).unlink()
    for patch in series:
        print(f"  applying {patch.name}")
        patching.apply(staging, patch.file, php().path)
    applied = [{"patch": p.name, "sha256": file_sha256(p.file)} for p in series]
    atomic.write_json(staging / build.patched_stamp.name, {"series": applied})
    atomic.replace_dir(staging, build.src)


def task_php_patch():
    """Fresh build tree for one build: pristine copy + the patches whose range covers it."""
    recipe = php()
    for build in builds():
        series = recipe.patches_for(build.version)
        yield {
            "name": build.id,
            "actions": [(_patch, [build, series])],
            "file_dep": [build.pristine_stamp] + [p.file for p in series],
            "targets": [build.patched_stamp],
            # The order matters as much as the contents (file_dep tracks those).
            "uptodate": [config_changed({"series": [p.name for p in series]})],
            "doc": f"patch {build.id}: " + (", ".join(p.name for p in series) or "no patches"),
        }
