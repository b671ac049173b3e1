"""Kiln's images run by a real container engine's wasm handler: podman 5 with crun built with
WasmEdge (Debian 13's crun 1.21, `+WASM:wasmedge`), the maintained successor of the Docker+Wasm
runtime the seed demo used.

Debian 12 has neither (crun 1.8 without wasm, podman 4, no WasmEdge) and Debian 13's packages
need glibc 2.38, so on Debian 12 podman runs inside a Debian 13 root of its own, made by
debootstrap under KILN_CACHE (kiln.debroot), through chroot: templates/crun-podman.sh.j2 does the
mounts podman and crun need there, in a private mount namespace. Where the machine itself has
podman and a crun with the WasmEdge handler (Debian 13), those run directly.

The root is its own, not an extension of kiln.wasmedge's: that one is used without chroot or
mounts (its wasmedge through the root's ld.so) by every smoke check, this one holds podman's
state and image store; each can be remade or removed without touching the other, at the cost
of 544 MB and 95 s once (measured on a loaded 2-core machine, docs/images.md).

crun picks the handler per container from an annotation (`run.oci.handler=wasm`; podman does
not pass image labels such as `module.wasm.image/variant` on as annotations) and then runs the
entrypoint with WasmEdge's C API, with only the bulk-memory, reference-types and SIMD proposals
turned on: no tail calls, no exception handling. Kiln's default modules use both (the TAILCALL
VM, setjmp/longjmp) and are refused at load; the `compat` flavour is built for this handler
(languages/php/recipe.toml, docs/images.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import atomic, debroot, settings, templating
from .errors import KilnError

PACKAGES = ["podman", "crun", "libwasmedge0"]
ANNOTATION = "run.oci.handler=wasm"
PLATFORM = "wasip1/wasm"
FEATURE = "+WASM:wasmedge"      # in `crun --version` when crun was built with the handler


@dataclass(frozen=True)
class Podman:
    command: tuple[str, ...]    # what runs podman (the root's script, or the machine's podman)
    in_root: bool               # host folders appear under /host inside (binds needed)
    where: str                  # for people
    versions: str               # "podman 5.4.2, crun 1.21"

    def path(self, host: Path) -> str:
        """How podman names a host path."""
        return f"/host{Path(host).resolve()}" if self.in_root else str(Path(host).resolve())

    def run(self, args: Sequence[str], binds: Sequence[Path] = (), stdin: bytes | None = None,
            timeout: float | None = 300) -> subprocess.CompletedProcess:
        prefix = list(self.command)
        if self.in_root:
            for folder in binds:
                prefix += ["--bind", str(Path(folder).resolve())]
            prefix.append("--")
        return subprocess.run([*prefix, *args], input=stdin, capture_output=True, timeout=timeout)

    def check(self, args: Sequence[str], binds: Sequence[Path] = (), timeout: float | None = 300) -> str:
        done = self.run(args, binds, timeout=timeout)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise KilnError(f"podman {args[0]} failed (exit {done.returncode}): {tail[0][:200]}")
        return done.stdout.decode(errors="replace")


def root_dir() -> Path:
    return settings.cache_dir() / f"debian-{debroot.SUITE}-crun"


def script_path(root: Path) -> Path:
    # Beside the root, not in it: a host-side script that mounts and chroots into it.
    return root.with_name(root.name + ".podman")


def _versions(command: Sequence[str]) -> str | None:
    """"podman version 5.4.2, crun 1.21" when podman runs and its runtime is a crun with the
    WasmEdge handler, else None. podman asks its runtime (crun re-executes itself through /proc,
    which only the script's chroot has)."""
    try:
        info = subprocess.run([*command, "info", "--format",
                               "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}"],
                              capture_output=True, text=True, timeout=120)
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if info.returncode or version.returncode or FEATURE not in info.stdout:
        return None
    crun_version = re.search(r"crun version (\S+)", info.stdout)
    return f"{version.stdout.strip()}, crun {crun_version.group(1) if crun_version else '?'}"


def _native() -> Podman | None:
    podman = shutil.which("podman")
    if podman and (versions := _versions([podman])):
        return Podman((podman,), False, podman, versions)
    return None


def _in_root(root: Path) -> Podman | None:
    script = script_path(root)
    if not (root / "usr" / "bin" / "podman").is_file() or not script.is_file():
        return None
    versions = _versions([str(script)])
    return Podman((str(script),), True, f"Debian 13 root in {root}", versions) if versions else None


def _configure(root: Path) -> None:
    """podman's configuration in the root and the host-side script, from templates/."""
    context = {"root": str(root), "suite": debroot.SUITE, "conf_dir": "/etc/containers"}
    for name in ("containers.conf", "storage.conf"):
        atomic.write_text(root / "etc" / "containers" / name,
                          templating.render(f"{name}.j2", **context))
    script = script_path(root)
    atomic.write_text(script, templating.render("crun-podman.sh.j2", **context), mode=0o755)


def find() -> Podman | None:
    """The machine's podman with a WasmEdge crun, else the one in Kiln's Debian 13 root."""
    return _native() or _in_root(root_dir())


def provision(log=print) -> Podman:
    """find(), or make the Debian 13 root with podman and crun first (root, debootstrap and apt's
    sources needed; 95 s here). A one-line KilnError says why it cannot."""
    found = _native()
    if found:
        return found
    root = root_dir()
    if not (root / "usr" / "bin" / "podman").is_file():
        seconds = debroot.make(root, PACKAGES, "crun", log)
        log(f"  crun: Debian 13 root with {' '.join(PACKAGES)} made in {seconds:.0f} s")
    _configure(root)   # every time: a root made earlier gets the templates' current text
    found = _in_root(root)
    if found is None:
        raise KilnError(f"{root} was made but its podman or crun ({FEATURE}) does not run: "
                        f"remove it and {script_path(root)}, and try again")
    return found


def load(podman: Podman, layout: Path, name: str) -> str:
    """Load an OCI image layout (Kiln's images/oci/<kind>/) into podman's store as `name`;
    returns the image ID. podman ignores the layout's ref.name, so the tag is set after."""
    out = podman.check(["load", "-q", "-i", podman.path(layout)], binds=[layout])
    loaded = re.search(r"sha256:([0-9a-f]{64})", out)
    if not loaded:
        raise KilnError(f"podman load of {layout} said no image ID: {out.strip()[:200]}")
    podman.check(["tag", loaded.group(1), name])
    return loaded.group(1)


def run_args(podman: Podman, image: str, args: Sequence[str] = (),
             volumes: Sequence[tuple[Path, str]] = (), env: Mapping[str, str] | None = None,
             interactive: bool = False, timeout: float | None = None) -> tuple[list[str], list[Path]]:
    """`podman run` arguments for one wasm container through crun's handler, and the host
    folders to bind for it. Volumes are read-only: WasmEdge under crun sees the whole container
    root as its `/`, mounts included."""
    # The platform Kiln's OCI layouts say (wasip1/wasm), or podman warns that it is not linux/amd64.
    words = ["run", "--rm", "--network=none", "--platform", PLATFORM, "--annotation", ANNOTATION]
    if timeout:   # conmon kills the container past it (killing podman alone would leave it)
        words.append(f"--timeout={max(1, math.ceil(timeout))}")
    if interactive:
        words.append("-i")
    for name, value in (env or {}).items():
        words += ["--env", f"{name}={value}"]
    for host, guest in volumes:
        words += ["--volume", f"{podman.path(host)}:{guest}:ro"]
    return [*words, image, *args], [host for host, _ in volumes]


def run(podman: Podman, image: str, args: Sequence[str] = (),
        volumes: Sequence[tuple[Path, str]] = (), env: Mapping[str, str] | None = None,
        stdin: bytes | None = None, timeout: float | None = 300) -> subprocess.CompletedProcess:
    words, binds = run_args(podman, image, args, volumes, env, interactive=stdin is not None,
                            timeout=timeout)
    # podman's own limit ends the container; this one (later) only guards against podman hanging.
    return podman.run(words, binds, stdin=stdin, timeout=timeout + 30 if timeout else None)


# ---------------------------------------------------------------------------------------------
# The server image: Kiln's HTTP server in front, a container per request behind it


class ContainerBackend:
    """php-cgi as the server image's entrypoint, one container per request through crun's
    handler: CGI/1.1 with the request in the environment and on stdin (kiln.server's backend
    interface). WASI preview 1 cannot listen, so the HTTP side stays on the host, as with
    WAGI; the container has no network."""

    kind = "crun"
    # Paths Kiln's own runner grants (php.ini's folder, a private /tmp); the image has neither.
    HOST_ONLY = ("PHPRC", "TMPDIR")

    def __init__(self, podman: Podman, image: str, max_output: int | None = None):
        self.podman, self.image, self.max_output = podman, image, max_output
        self.path = image   # what the server's log line names

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None):
        from .runner import EXIT_TIMEOUT
        from .server.backends import CgiResult
        env = {k: v for k, v in env.items() if k not in self.HOST_ONLY}
        try:
            done = run(self.podman, self.image, env=env, stdin=body, timeout=timeout)
        except subprocess.TimeoutExpired:
            return CgiResult(EXIT_TIMEOUT, b"", b"", timed_out=True)
        except OSError as exc:
            return CgiResult(-1, b"", b"", error=f"podman: {exc.strerror}")
        # podman run exits 255 when its --timeout ended the container (measured with podman
        # 5.4); crun's handler itself exits only 0 or 1.
        timed_out = done.returncode == 255
        truncated = self.max_output is not None and len(done.stdout) > self.max_output
        return CgiResult(done.returncode, done.stdout, done.stderr, timed_out=timed_out,
                         truncated=truncated)


@contextlib.contextmanager
def server(podman: Podman, layout: Path, image: str, port: int = 0, **options):
    """Kiln's HTTP server for a `-server` image (its OCI layout, loaded into podman as `image`),
    started for the `with` block: routing and static files from the layout's files, each
    script run in a container. Yields the kiln.server.Server (its .url)."""
    from . import shimrun
    from .server import Server, rootfs_config
    loaded = shimrun.load_image(str(layout))
    docroot = loaded.labels.get("kiln.server.docroot", "/docroot")
    with tempfile.TemporaryDirectory(prefix="kiln-crun-server-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        shimrun.unpack(loaded, rootfs)
        config = rootfs_config(rootfs, Path("/php-cgi.wasm"), docroot, port, **options)
        config = dataclasses.replace(config, module=None, isolation="request",
                                     backend=ContainerBackend(podman, image, config.max_response))
        with Server(config) as started:
            yield started


def load_build(podman: Podman, build, kinds: Sequence[str] = ("cli", "server")) -> dict[str, str]:
    """A build's OCI layouts (`doit php_image:<id>` writes them) loaded under Kiln's tags."""
    from . import images
    loaded = {}
    for kind in kinds:
        layout = images.layout_path(build, kind)
        if not (layout / "index.json").is_file():
            raise KilnError(f"no OCI layout at {layout}: build the images first "
                            f"(doit php_image:{build.id})")
        loaded[kind] = images.tag(build, kind)
        load(podman, layout, loaded[kind])
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    """python -m kiln.crun [VERSION [FLAVOUR]]: find or make podman with crun's WasmEdge
    handler, load the build's cli and server images into it, and say how to run them."""
    import argparse
    from .layout import Build
    parser = argparse.ArgumentParser(prog="python -m kiln.crun", description=main.__doc__)
    parser.add_argument("version", nargs="?")
    parser.add_argument("flavour", nargs="?", default="compat")
    ns = parser.parse_args(argv)
    try:
        podman = provision()
        print(f"{podman.versions} ({podman.where}); podman runs as: {' '.join(podman.command)}"
              + (" [--bind HOST_DIR]... -- ARGS (HOST_DIR is /host/HOST_DIR inside)" if podman.in_root else ""))
        if ns.version:
            for kind, name in load_build(podman, Build("php", ns.version, ns.flavour)).items():
                print(f"  {kind}: {name}")
    except KilnError as exc:
        print(f"kiln.crun: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
