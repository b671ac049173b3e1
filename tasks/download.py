"""download: fetch each release's tarball from the mirrors or upstream, sha256-pinned."""
from doit.tools import config_changed

from kiln import fetch, settings
from kiln.layout import source_archive

from . import php, user_errors


@user_errors
def _download(filename, sha256, urls, mirrors):
    origin = fetch.fetch(filename, sha256, source_archive(filename), urls, mirrors)
    print(f"  {filename}: verified sha256 {sha256[:16]}... (from {origin})")


def task_php_download():
    """Fetch a PHP release tarball (KILN_MIRROR first, then php.net) and check its sha256."""
    recipe = php()
    for version, sha256 in recipe.versions.items():
        filename = recipe.source_name(version)
        # Mirrors are not an input: any origin that yields the pinned bytes is as good.
        kw = {"filename": filename, "sha256": sha256}
        yield {
            "name": version,
            "actions": [(_download, [filename, sha256, recipe.urls(version), settings.mirrors()])],
            "targets": [source_archive(filename)],
            "uptodate": [config_changed(kw)],
            "doc": f"fetch {filename}",
            "clean": True,
        }
