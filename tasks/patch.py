"""patch: bring the build tree back to the pristine release, then apply the release's series.

The tree is refreshed in place rather than copied anew: only files that differ from the
pristine tree (the ones the previous series patched) are rewritten, and configure's output
(Makefile, config headers) stays. A series edit that touches only C sources therefore goes
straight to make, where ccache (content-keyed) recompiles only what the edit changed; zig's
own cache, which knows files by inode and mtime, also keeps most of its hits. The stamp is
removed first and written last, so an interrupted run is redone in full next time.
"""
import os
import shutil

from doit.tools import config_changed

from kiln import atomic, patching
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors


def refresh(pristine, tree) -> int:
    """Make every file of `pristine` present and identical (bytes, mode, mtime) in `tree`."""
    restored = 0
    for folder, dirs, files in os.walk(pristine):
        relative = os.path.relpath(folder, pristine)
        target_folder = os.path.join(tree, relative)
        os.makedirs(target_folder, exist_ok=True)
        for name in files:
            source, target = os.path.join(folder, name), os.path.join(target_folder, name)
            theirs = os.lstat(source)
            try:
                ours = os.lstat(target)
                if (ours.st_size, ours.st_mtime_ns, ours.st_mode) == (theirs.st_size, theirs.st_mtime_ns, theirs.st_mode):
                    continue
                os.unlink(target)
            except FileNotFoundError:
                pass
            shutil.copy2(source, target, follow_symlinks=False)
            restored += 1
    return restored


@user_errors
def _patch(build: Build, series):
    build.patched_stamp.unlink(missing_ok=True)
    build.src.mkdir(parents=True, exist_ok=True)
    restored = refresh(build.pristine, build.src)
    (build.src / build.pristine_stamp.name).unlink(missing_ok=True)
    print(f"  {build.src}: {restored} files restored from the pristine tree")
    for patch in series:
        print(f"  applying {patch.name}")
        patching.apply(build.src, patch.file, php().path)
    applied = [{"patch": p.name, "sha256": file_sha256(p.file)} for p in series]
    atomic.write_json(build.patched_stamp, {"series": applied})


def task_php_patch():
    """Build tree for one build: the pristine release + the patches whose `when` it satisfies."""
    recipe = php()
    for build in builds():
        series = recipe.resolve(build.version, build.flavour).patches
        yield {
            "name": build.id,
            "actions": [(_patch, [build, series])],
            "file_dep": [build.pristine_stamp] + [p.file for p in series],
            "targets": [build.patched_stamp],
            # The order matters as much as the contents (file_dep tracks those).
            "uptodate": [config_changed({"series": [p.name for p in series], "tree": "refreshed in place"})],
            "doc": f"patch {build.id}: " + (", ".join(p.name for p in series) or "no patches"),
        }
