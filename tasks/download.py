"""download: fetch each release's tarball from the mirrors or upstream, sha256-pinned,
and check its OpenPGP signature against the release keys when one is published beside it."""

from doit.tools import config_changed

from kiln import atomic, fetch, settings, signature
from kiln.errors import KilnError
from kiln.layout import source_archive

from . import php, user_errors


@user_errors
def _download(filename, sha256, urls, mirrors, keys):
    target = source_archive(filename)
    origin = fetch.fetch(filename, sha256, target, urls, mirrors)
    print(f"  {filename}: sha256 {sha256[:16]}... matches the pin (from {origin})")
    record = {"sha256": sha256, "origin": origin, "signature": None}
    asc = target.with_name(target.name + ".asc")
    fetched = keys and fetch.fetch_companion(origin + ".asc", asc)
    if keys and (fetched or asc.is_file()):
        try:
            record["signature"] = signature.verify(target, asc, keys)
        except Exception as exc:
            target.unlink(missing_ok=True)  # a bad signature condemns the tarball too
            asc.unlink(missing_ok=True)
            if isinstance(exc, KilnError):  # say who served the pair: that origin is suspect
                served = f"{origin}.asc" if fetched else f"{asc} (left in the source cache)"
                raise KilnError(f"{exc} (signature from {served})") from None
            raise
        print(f"  {filename}: good OpenPGP signature from {record['signature']}")
    else:
        print(f"  {filename}: no signature published beside it; the sha256 pin is the check")
    atomic.write_json(target.with_name(target.name + ".verified.json"), record)
    return {"stamp": _stamp(target)}  # doit keeps it: _unchanged_since_verified reads it


def _stamp(path):
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _unchanged_since_verified(target, sha256):
    """doit only checks that a target exists: a tarball truncated or edited in the source cache
    would pass as done. Up to date while its size and mtime are those it had when verified;
    after a change, only if its bytes still match the pin (a touch, a copy with -p)."""
    def check(task, values):  # noqa: ARG001 - doit passes both by name
        try:
            stamp = _stamp(target)
        except OSError:
            return False
        return stamp == values.get("stamp") or fetch.file_sha256(target) == sha256
    return check


def task_php_download():
    """Fetch a PHP release tarball (KILN_MIRROR first, then php.net) and check its sha256."""
    recipe = php()
    keys = recipe.folder / recipe.settings["signing_keys"] if "signing_keys" in recipe.settings else None
    keys_text = keys.read_text() if keys else None
    for version, sha256 in recipe.versions.items():
        filename = recipe.source_name(version)
        target = source_archive(filename)
        # Mirrors are not an input: any origin that yields the pinned bytes is as good.
        kw = {"filename": filename, "sha256": sha256, "keys": keys_text}
        yield {
            "name": version,
            "actions": [(_download, [filename, sha256, recipe.urls(version), settings.mirrors(), keys])],
            "targets": [target, target.with_name(target.name + ".verified.json")],
            "uptodate": [config_changed(kw), _unchanged_since_verified(target, sha256)],
            "doc": f"fetch {filename}",
            "clean": True,
        }
