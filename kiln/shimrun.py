"""Run a wasm container image the way a containerd wasm shim (runwasi) does, in Wasmtime.

    kiln image run [-v HOST:GUEST[:ro]] [-e K=V] [--port N] IMAGE [ARGS...]
    (python -m kiln.shimrun is the same program)

What happens, as with Docker+Wasm:
- the image's layers are unpacked into a fresh root file system, which the module gets as `/`
  (read-only unless --writable-rootfs; writes then go to this run's copy and are discarded);
- like Docker, the runtime adds /etc/hostname, /etc/hosts and /etc/resolv.conf, and a mount
  point folder for each -v volume, so `/` lists e.g. `docroot etc php.wasm`;
- Entrypoint + Cmd from the image config make argv (ARGS replace Cmd, --entrypoint replaces
  Entrypoint); the guest's environment is exactly the config's Env, plus HOSTNAME (and a
  default PATH if the image has none), plus -e variables: nothing from the host;
- WorkingDir is granted as `.` as well (WASI preview 1 has no working directory of its own);
- a precompiled entrypoint (.cwasm, the -cli-aot image) runs only when the image's
  kiln.engine.fingerprint label matches this Wasmtime; a .wasm entrypoint is compiled once and
  cached under KILN_CACHE (runner.load_cached, as for `kiln run`);
- an image labelled kiln.server=cgi (the -server image) is served over HTTP on --port by
  kiln.server (php-cgi per request), since a WASI module cannot listen itself.

IMAGE is looked up, in this order: an OCI image layout folder (`path[:tag]`), a reference with a
registry host (`127.0.0.1:5000/php-wasm:8.2.32-cli`, pulled through the distribution API),
an image in the Docker engine (DOCKER_HOST; `docker save`), then a Kiln-built OCI layout under
KILN_BUILD_OUTPUT whose tag matches.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from . import cliargs, oci, run_command, runner, settings
from .errors import KilnError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ELF = b"\x7fELF"
_WASM = b"\0asm"


@dataclass
class LoadedImage:
    source: str          # where it came from, for messages
    config: dict         # full OCI/Docker config (with "config" holding the run settings)
    layers: list[bytes]  # uncompressed layer tars, base first

    @property
    def run_config(self) -> dict:
        return self.config.get("config") or self.config.get("Config") or {}

    @property
    def labels(self) -> dict:
        return self.run_config.get("Labels") or {}

    @property
    def platform(self) -> str:
        return f"{self.config.get('os')}/{self.config.get('architecture')}"


# ---------------------------------------------------------------------------------------------
# Finding the image


def _from_built(source: str, built: oci.Built) -> LoadedImage:
    return LoadedImage(source, json.loads(built.config), oci.uncompressed_layers(built))


def _split_layout_arg(spec: str) -> tuple[Path, str | None] | None:
    path = Path(spec)
    if (path / "index.json").is_file():
        return path, None
    head, sep, tag_part = spec.rpartition(":")
    if sep and (Path(head) / "index.json").is_file():
        return Path(head), tag_part
    return None


def _kiln_layouts() -> list[Path]:
    root = settings.build_output()
    return sorted(root.glob("*/*/images/oci/*/index.json"))


def load_image(name: str) -> LoadedImage:
    layout = _split_layout_arg(name)
    if layout:
        path, tag = layout
        return _from_built(f"OCI layout {path}", oci.Layout(path).built(tag))
    first = name.split("/", 1)[0]
    if "/" in name and oci.looks_like_registry(first):
        ref = oci.parse_reference(name)
        registry = oci.Registry(ref.registry)
        return _from_built(f"registry {ref}", registry.pull_image(ref.repository, ref.ref))
    problems = []
    try:
        return _from_engine(name)
    except KilnError as exc:
        problems.append(str(exc))
    for index in _kiln_layouts():
        layout = oci.Layout(index.parent)
        if name in layout.tags():
            return _from_built(f"OCI layout {index.parent}", layout.built(name))
    problems.append(f"no Kiln OCI layout under {settings.build_output()} is tagged {name}")
    raise KilnError(f"image {name} not found: {'; '.join(problems)}")


def _from_engine(name: str) -> LoadedImage:
    import docker

    from . import images

    try:
        engine = docker.DockerClient(base_url=images.engine_address(), timeout=60)
        try:
            image = engine.images.get(name)
            config, layers = oci.from_docker_save(image.save(named=True), name)
        finally:
            engine.close()
    except docker.errors.ImageNotFound:
        raise KilnError(f"the Docker engine has no image {name}") from None
    except docker.errors.DockerException as exc:
        raise KilnError(f"no Docker engine at {images.engine_address()} ({images._reason(exc)})") from None
    return LoadedImage(f"Docker engine image {name}", config, layers)


# ---------------------------------------------------------------------------------------------
# Root file system


def unpack(image: LoadedImage, target: Path) -> None:
    """Apply the layers in order (OCI whiteouts honoured); nothing may land outside target."""
    target = Path(target)
    for data in image.layers:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = []
            for member in tar.getmembers():
                path = PurePosixPath(member.name.lstrip("/"))
                if path.name == ".wh..wh..opq":
                    folder = target / path.parent
                    if folder.is_dir():
                        for child in folder.iterdir():
                            _remove(child)
                    continue
                if path.name.startswith(".wh."):
                    _remove(target / path.parent / path.name[len(".wh."):])
                    continue
                members.append(member)
            # The "data" filter refuses absolute names, `..`, links out of target and devices.
            tar.extractall(target, members=members, filter="data")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _inside(root: Path, guest: str) -> Path:
    parts = [p for p in PurePosixPath(guest).parts if p not in ("/", ".")]
    if ".." in parts:
        raise KilnError(f"guest path {guest!r} must not contain '..'")
    return root.joinpath(*parts)


def add_runtime_files(root: Path, hostname: str) -> None:
    """What Docker's runtime puts in every container: /etc/hostname, /etc/hosts, resolv.conf."""
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                               f"127.0.1.1\t{hostname}\n")
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    (etc / "resolv.conf").write_text(resolv)


# ---------------------------------------------------------------------------------------------
# Modules


def load_entrypoint(image: LoadedImage, module_path: Path, guest: str):
    with open(module_path, "rb") as f:
        magic = f.read(4)
    if magic == _WASM:
        try:
            return runner.load_cached(module_path)  # compiled once per content and engine, like a shim
        except runner.StackSwitchingRefused:
            raise KilnError(runner.stack_switching_refused(
                f"{guest} in {image.source}", "`kiln image run` (wasmtime-py, as containerd's Wasmtime shim)",
                "run the module with `kiln run`, or use an image of another flavour")) from None
    if magic == _ELF:
        import wasmtime

        labels = image.labels
        wanted = labels.get("kiln.engine.fingerprint")
        # With or without epoch checks, the module runs on the engine it was compiled for.
        flags = [flag for flag in (False, True) if wanted == runner.engine_fingerprint(flag)]
        if not flags:
            raise KilnError(
                f"{guest} in {image.source} is precompiled for Wasmtime {labels.get('kiln.engine.version', '?')} "
                f"(engine {wanted or 'unknown: no kiln.engine.fingerprint label'}); this is Wasmtime "
                f"{runner.wasmtime_py_version()} (engine {runner.engine_fingerprint()}): "
                f"run the -cli image instead, or rebuild the -cli-aot image here")
        try:
            return runner.deserialize_file(module_path, flags[0])
        except wasmtime.WasmtimeError as exc:
            raise KilnError(f"{guest}: cannot load the precompiled module ({str(exc).splitlines()[0]})") from None
    raise KilnError(f"{guest} in {image.source} is not a wasm module (starts with {magic!r})")


# ---------------------------------------------------------------------------------------------
# Running


# A -v bind mount is a grant of a host folder, spelled and parsed as for `kiln run`.
Volume = runner.Preopen


def parse_volume(spec: str) -> Volume:
    """HOST:GUEST[:ro|:rw], as `docker run -v` (GUEST absolute, writable unless :ro)."""
    return cliargs.parse_grant(spec)


def parse_env(spec: str) -> tuple[str, str | None]:
    name, sep, value = spec.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"expected K=V, got {spec!r}")
    return name, (value if sep else None)  # `-e NAME` alone: not taken from the host (no leaks)


def guest_environment(image: LoadedImage, hostname: str, extra: Sequence[tuple[str, str | None]]) -> dict:
    env: dict[str, str] = {}
    for item in image.run_config.get("Env") or []:
        name, _, value = item.partition("=")
        env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)  # Docker's default, as containerd adds it
    env["HOSTNAME"] = hostname
    for name, value in extra:
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def command(image: LoadedImage, args: Sequence[str], entrypoint: str | None) -> list[str]:
    config = image.run_config
    head = [entrypoint] if entrypoint else list(config.get("Entrypoint") or [])
    tail = list(args) if args or entrypoint else list(config.get("Cmd") or [])
    argv = head + tail
    if not argv:
        raise KilnError(f"{image.source} has no Entrypoint or Cmd: give the module to run")
    return argv


def run_image(image: LoadedImage, args: Sequence[str] = (), volumes: Sequence[Volume] = (),
              env: Sequence[tuple[str, str | None]] = (), entrypoint: str | None = None,
              hostname: str | None = None, writable_rootfs: bool = False,
              timeout: float | None = None, inherit_stdio: bool = True,
              stdin: bytes | None = None, scratch: Path | None = None) -> runner.RunResult:
    """Run `image` once; its rootfs is unpacked into a temporary folder removed afterwards
    (under `scratch` when given: then the caller removes it)."""
    if image.config.get("os") not in (oci.WASM_OS, "wasi", "wasip2", None) and \
            image.labels.get("module.wasm.image/variant") is None and \
            image.labels.get("kiln.platform") is None:
        raise KilnError(f"{image.source} is a {image.platform} image, not a wasm one")
    hostname = hostname or secrets.token_hex(6)
    argv = command(image, args, entrypoint)
    with tempfile.TemporaryDirectory(prefix="kiln-shim-", dir=scratch) as scratch:
        root = Path(scratch) / "rootfs"
        root.mkdir()
        unpack(image, root)
        add_runtime_files(root, hostname)
        for volume in volumes:
            _inside(root, volume.guest).mkdir(parents=True, exist_ok=True)
        module_file = _inside(root, argv[0])
        if not module_file.is_file():
            raise KilnError(f"{argv[0]} (the entrypoint) is not a file in {image.source}")
        module = load_entrypoint(image, module_file, argv[0])
        preopens = [runner.Preopen(root, "/", writable_rootfs)]
        workdir = image.run_config.get("WorkingDir")
        if workdir and workdir != "/":
            preopens.append(runner.Preopen(_inside(root, workdir), ".", writable_rootfs))
        preopens += [runner.Preopen(v.host, v.guest, v.writable) for v in volumes]
        return runner.run(module, argv, env=guest_environment(image, hostname, env),
                          preopens=preopens, timeout=timeout, inherit_stdio=inherit_stdio,
                          stdin=stdin)


def serve_image(image: LoadedImage, port: int, volumes: Sequence[Volume] = (),
                env: Sequence[tuple[str, str | None]] = ()) -> int:
    """Serve a kiln.server=cgi image over HTTP: unpack it, then hand it to kiln.server."""
    try:
        from . import server  # the HTTP server of the server issue (php-cgi per request)
    except ImportError:
        raise KilnError(
            f"{image.source} is a server image: serving it needs Kiln's HTTP server (kiln/server.py, "
            f"the server issue), which is not in this checkout yet. Meanwhile its php-cgi.wasm runs "
            f"one request at a time: python -m kiln.shimrun --entrypoint /php-cgi.wasm IMAGE ...") from None
    labels = image.labels
    with tempfile.TemporaryDirectory(prefix="kiln-shim-") as scratch:
        root = Path(scratch) / "rootfs"
        root.mkdir()
        unpack(image, root)
        entry = command(image, [], None)[0]
        return server.serve_rootfs(
            rootfs=root, module=_inside(root, entry),
            docroot=labels.get("kiln.server.docroot", "/docroot"), port=port,
            env=guest_environment(image, secrets.token_hex(6), env),
            mounts=[(v.host, v.guest, v.writable) for v in volumes])


DESCRIPTION = """\
Run a wasm container image the way a containerd wasm shim (runwasi) does, in Wasmtime.

The image's layers become the module's read-only / (plus Docker's /etc/hostname, hosts and
resolv.conf); its Entrypoint and Cmd make argv, its Env the environment (nothing from the
host's); -v grants host folders. An image labelled kiln.server=cgi (the -server image) is
served over HTTP instead, php-cgi per request.

IMAGE is an OCI layout folder (PATH[:TAG]), a reference with a registry host
(127.0.0.1:5000/php-wasm:8.2.32-cli), an image in the Docker engine (DOCKER_HOST), or the tag
of an OCI layout Kiln built under KILN_BUILD_OUTPUT, tried in that order.
"""

EPILOG = """\
exit status:
  the module's own (0-255), 124 when --timeout ended it, 134 when it trapped,
  130/143 when interrupted (Ctrl-C/SIGTERM), 2 for a usage or input error.

examples:
  kiln image run php-wasm:8.2.32-cli -r 'echo PHP_VERSION, "\\n";'
  kiln image run -v "$PWD/site:/docroot:ro" php-wasm:8.2.32-cli /docroot/index.php
  kiln image run -p 8080 php-wasm:8.2.32-server
"""


def main(argv: Sequence[str] | None = None, prog: str = "python -m kiln.shimrun") -> int:
    label = prog.removeprefix("python -m ")
    parser = cliargs.Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=cliargs.formatter,
                            usage=f"{prog} [OPTIONS] IMAGE [ARGS...]")
    parser.add_argument("-v", "--volume", action="append", default=[], type=cliargs.grant_type(),
                        metavar="HOST:GUEST[:ro]",
                        help="bind a host folder at GUEST (repeatable; writable unless :ro)")
    parser.add_argument("-e", "--env", action="append", default=[], type=parse_env,
                        metavar="NAME=VALUE", help="set a guest environment variable (repeatable)")
    parser.add_argument("-p", "--port", type=cliargs.port, metavar="PORT",
                        help="serve a server image on this loopback port "
                             "(default: the image's kiln.server.port label)")
    parser.add_argument("--entrypoint", metavar="MODULE",
                        help="run this module of the image instead of its Entrypoint")
    parser.add_argument("--hostname", metavar="NAME",
                        help="HOSTNAME and /etc/hostname (default: random, like Docker)")
    parser.add_argument("--writable-rootfs", action="store_true",
                        help="let the guest write to its / (a throw-away copy)")
    parser.add_argument("--timeout", type=cliargs.positive_float, metavar="SECONDS",
                        help="wall-clock limit; the run then exits 124")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="replace the image's Cmd")
    ns = parser.parse_args(argv)
    try:
        image = load_image(ns.image)
        if image.labels.get("kiln.server") == "cgi" and not ns.entrypoint:
            port = ns.port or int(image.labels.get("kiln.server.port", "8080"))
            return serve_image(image, port, ns.volume, ns.env)
        if ns.port:
            raise KilnError(f"{image.source} is not a server image (no kiln.server label): --port does not apply")
        sys.stdout.flush()
        with tempfile.TemporaryDirectory(prefix="kiln-shim-") as scratch:
            # Unpacking and running both happen in the worker: Ctrl-C or --timeout ends them
            # at once (the module needs no epoch checks), and the unpacked root file system
            # goes with them.
            def work(arm) -> runner.RunResult:
                if ns.timeout is not None:
                    arm(ns.timeout)
                return run_image(image, ns.args, ns.volume, ns.env, ns.entrypoint, ns.hostname,
                                 ns.writable_rootfs, scratch=Path(scratch))

            result = run_command.run_interruptible(
                work, cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True), label=label)
    except KilnError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return cliargs.EXIT_USAGE
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
