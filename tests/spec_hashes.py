"""What every build of the graph would be built from, as sha256s, without building anything.

For each build `doit list --all` has: the rendered wl-build script, the configure task's
config_changed dict, the patch series (names and contents, in order) and the patch task's
config_changed dict, and the remote-cache key. tests/fixtures/spec-hashes.json holds them as
they were before the recipe became variants (issue #29): a refactor of how a build is described
must leave them all unchanged, or the modules (which record the configure command) change too.

Independent of the machine: a fixed toolchain stands in for zig (its identity is an input of
the key like any other), and the paths of the checkout, the build output, native PHP and the
autoconf version are replaced by placeholders in the script text. The remote-cache key cannot
be normalised after the fact: it is compared only where this machine's autoconf is the
recorded one (or the build does not regenerate configure).

    .venv/bin/python tests/spec_hashes.py          # print the current hashes
    .venv/bin/python tests/spec_hashes.py --write  # record them (only before a refactor)
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIXTURE = ROOT / "tests" / "fixtures" / "spec-hashes.json"


def _sha(value) -> str:
    data = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def tools():
    from kiln import toolchain
    return toolchain.Toolchain(name="zig", version="0.0-fixture", cc=["zig", "cc"], ar=["zig", "ar"],
                               ranlib=["zig", "ranlib"], nm=["nm"], cflags=["-O2", "-g0"],
                               ldflags=["-s"], libs=["-lm"])


def current() -> dict:
    """{"context": machine facts the hashes depend on, "builds": {build id: {what: sha256}}}."""
    from doit.tools import config_changed  # noqa: F401  (the dicts below are what it hashes)

    from kiln import remote_cache, settings, spec, toolchain
    from tasks import builds, configure, php

    fixed = tools()
    native = spec.native_php()
    try:
        autoconf = toolchain.autoconf_version()
    except Exception:  # noqa: BLE001  no autoconf: builds that regenerate configure fail to render
        autoconf = None
    out, root = str(settings.build_output()), str(settings.ROOT)
    result = {}
    for build in builds():
        script = configure.render_script(build, fixed)
        # Whole path components only: a checkout at /kiln must not turn $SRC/kiln-shim into <root>-shim.
        text = script
        for path, placeholder in ((out, "<out>"), (root, "<root>"), (sys.executable, "<python>")):
            text = re.sub(re.escape(path) + r"(?=[/'\"\s]|$)", placeholder, text, flags=re.M)
        text = text.replace(f"'{native}'", "<native-php>").replace(f" {native} ", " <native-php> ")
        if autoconf:
            text = text.replace(autoconf, "<autoconf>")
        series = php().patches_for(build.version, build.flavour)
        from kiln.fetch import file_sha256
        result[build.id] = {
            "script": _sha(text),
            # What php_configure's config_changed holds: the script and the spec's configure_patches.
            "configure_config": _sha({"script": text, "configure_patches": [
                list(p) for p in spec.of(build, fixed).configure_patches]}),
            "series": _sha([[p.name, file_sha256(p.file)] for p in series]),
            "patch_config": _sha({"series": [p.name for p in series], "tree": "refreshed in place"}),
            "regenerates_configure": php().regenerates_configure(build.version, build.flavour),
            "cache_key": remote_cache.key(build, php(), fixed),
        }
    return {"context": {"autoconf": autoconf}, "builds": result}


def main(argv: list[str]) -> int:
    data = current()
    if argv == ["--write"]:
        from kiln import atomic
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(FIXTURE, json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"{FIXTURE}: {len(data['builds'])} builds")
    else:
        print(json.dumps(data, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
