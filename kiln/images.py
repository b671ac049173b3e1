"""Container images of a build: render the Dockerfile, build it on a Docker engine, re-pack it.

Two results per image kind (see docs/images.md):
- an image in the Docker engine named by DOCKER_HOST (default socket), tagged
  `<KILN_IMAGE_REPO>:<version>-<kind>[-<flavour>]`; Docker 20.10 labels it linux/amd64,
  it is for local use (`docker images`, `docker save`, Kiln's shim runner);
- an OCI image layout under build-output/.../images/oci/<kind> with the same files and run
  config but platform wasip1/wasm, assembled reproducibly (kiln.oci): what gets published.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import atomic, oci, runner, settings, templating
from .errors import KilnError
from .layout import Build

PHP_SOURCE = "https://github.com/php/php-src"
LANGUAGES = settings.ROOT / "languages"
# The demo page (php_uname, environment, `/`): the server image's docroot until a flavour
# brings its own (the WordPress flavour will).
DEFAULT_DOCROOT = LANGUAGES / "php" / "smoke" / "docroot"
SERVER_DOCROOT = "/docroot"
SERVER_PORT = 8080
MB = 1_000_000  # Docker shows sizes in decimal units; so do the reports


@dataclass(frozen=True)
class Kind:
    name: str
    template: str
    title: str
    description: str
    modules: tuple[tuple[str, bool], ...]  # (sapi, precompiled) copied to the context root
    flavours: tuple[str, ...] = ()         # only for these flavours (empty: every flavour)
    replaces: str | None = None            # the kind it stands in for, for those flavours


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("cli", "Dockerfile.cli.j2", "PHP {version} CLI (wasm32-wasi)",
         "The PHP command line as a WASI module; run it with a wasm runtime or shim.",
         (("php", False),)),
    Kind("cli-aot", "Dockerfile.cli-aot.j2", "PHP {version} CLI, precompiled for Wasmtime {engine}",
         "The PHP command line precompiled by Wasmtime; valid only for the engine in its labels.",
         (("php", True),)),
    Kind("server", "Dockerfile.server.j2", "PHP {version} CGI server (wasm32-wasi)",
         "php-cgi as a WASI module and a docroot, served by a host HTTP server per request.",
         (("php-cgi", False),)),
    # The demo's `7.4.32-server-wordpress`: the server image with WordPress on SQLite as its
    # docroot (build-output/wordpress/docroot, `doit wordpress_docroot`), wp-content/ a volume.
    Kind("server-wordpress", "Dockerfile.server-wordpress.j2",
         "WordPress on SQLite, served by PHP {version} CGI (wasm32-wasi)",
         "php-cgi as a WASI module and WordPress on SQLite, served by a host HTTP server per request.",
         (("php-cgi", False),), flavours=("wordpress",), replaces="server"),
)}
# The docroot folder a server kind needs writable (its database and uploads): a volume.
WRITABLE_DOCROOT_FOLDER = {"server-wordpress": "wp-content"}


def kinds_for(build: Build) -> list[str]:
    """The image kinds of a build: the general ones, with a flavour's own kinds in place of
    those they replace (the wordpress flavour's server image is server-wordpress)."""
    own = [k for k in KINDS.values() if k.flavours and build.flavour in k.flavours]
    replaced = {k.replaces for k in own}
    return [k.name for k in KINDS.values()
            if (not k.flavours and k.name not in replaced) or k in own]


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise KilnError(f"unknown image kind {kind!r}: known kinds are {', '.join(KINDS)}")
    return KINDS[kind]


# ---------------------------------------------------------------------------------------------
# Names and paths


def tag(build: Build, kind: str, repository: str | None = None) -> str:
    """`php-wasm:8.2.32-cli`; another flavour goes last, like the demo's `-server-wordpress`
    (a flavour's own kind already names it)."""
    own_kind = build.flavour in check_kind(kind).flavours
    suffix = kind if build.flavour == "default" or own_kind else f"{kind}-{build.flavour}"
    return f"{repository or settings.image_repository()}:{build.version}-{suffix}"


def images_dir(build: Build) -> Path:
    return build.root / "images"


def dockerfile_path(build: Build, kind: str) -> Path:
    return images_dir(build) / kind / "Dockerfile"


def context_path(build: Build, kind: str) -> Path:
    return images_dir(build) / kind / "context"


def record_path(build: Build, kind: str) -> Path:
    """What the last build of this image produced: engine image ID, OCI digest, sizes."""
    return images_dir(build) / f"{kind}.json"


def layout_path(build: Build, kind: str) -> Path:
    return images_dir(build) / "oci" / kind


def report_paths(build: Build) -> tuple[Path, Path]:
    return build.root / "images.json", build.root / "images.md"


def docroot(build: Build, kind: str = "server") -> Path | None:
    """The docroot a server kind carries (None: the kind has none)."""
    if kind == "server":
        return DEFAULT_DOCROOT
    if kind == "server-wordpress":
        from . import wordpress
        return wordpress.docroot_dir()
    return None


# ---------------------------------------------------------------------------------------------
# Dockerfile rendering


def dockerfile_quote(value) -> str:
    """A double-quoted Dockerfile word (LABEL/ARG values): backslash, quote and $ escaped."""
    text = str(value)
    if "\n" in text:
        raise KilnError(f"a Dockerfile value cannot hold a newline: {text!r}")
    return '"' + re.sub(r'([\\"$])', r"\\\1", text) + '"'


def template_values(build: Build, kind: str) -> dict:
    spec = check_kind(kind)
    engine = runner.wasmtime_py_version()
    return {
        "kind": kind,
        "version": build.version,
        "flavour": build.flavour,
        "title": spec.title.format(version=build.version, engine=engine),
        "description": spec.description,
        "source": PHP_SOURCE,
        "revision": f"php-{build.version}",  # php-src's release tag
        "created": oci.rfc3339(settings.source_date_epoch()),
        "engine_version": engine,
        "engine_fingerprint": runner.engine_fingerprint(),
        "engine_machine": os.uname().machine,
        "docroot": SERVER_DOCROOT,
        "port": SERVER_PORT,
        "writable": WRITABLE_DOCROOT_FOLDER.get(kind),
    }


def render(build: Build, kind: str) -> tuple[str, dict[str, str]]:
    """The Dockerfile text and the build args passed with it (the same values, made explicit
    so `docker history`/inspect show them and a hand-run build can override them)."""
    values = template_values(build, kind)
    text = templating.render(check_kind(kind).template, dq=dockerfile_quote, **values)
    names = {"PHP_VERSION": "version", "KILN_FLAVOUR": "flavour", "SOURCE_URL": "source",
             "REVISION": "revision", "CREATED": "created", "ENGINE_VERSION": "engine_version",
             "ENGINE_FINGERPRINT": "engine_fingerprint", "PORT": "port"}
    declared = set(re.findall(r"^ARG (\w+)", text, flags=re.M))
    buildargs = {arg: str(values[key]) for arg, key in names.items() if arg in declared}
    return text, buildargs


def inputs(build: Build, kind: str) -> list[Path]:
    """Files the image is made of (doit file_dep)."""
    spec = check_kind(kind)
    files = [build.module(sapi, aot=aot) for sapi, aot in spec.modules]
    if kind == "server":
        files += sorted(p for p in docroot(build).rglob("*") if p.is_file())
    elif kind == "server-wordpress":
        from . import wordpress
        files.append(wordpress.docroot_stamp())  # the docroot's record: rewritten with it
    return files


def stage_context(build: Build, kind: str) -> Path:
    """Copy exactly the image's files into a fresh context folder, mtimes fixed."""
    spec = check_kind(kind)
    target = context_path(build, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".context.", dir=target.parent))
    try:
        for sapi, aot in spec.modules:
            source = build.module(sapi, aot=aot)
            if not source.is_file():
                raise KilnError(f"{source} is missing: build it first (doit php:{build.id})")
            shutil.copyfile(source, staged / source.name)
            (staged / source.name).chmod(0o755)
        source_docroot = docroot(build, kind)
        if source_docroot is not None:
            if not source_docroot.is_dir():
                raise KilnError(f"{source_docroot} is missing: assemble it first "
                                f"(doit wordpress_docroot)")
            shutil.copytree(source_docroot, staged / "docroot")
        epoch = settings.source_date_epoch()
        for path in [staged, *staged.rglob("*")]:
            os.utime(path, (epoch, epoch), follow_symlinks=False)
        atomic.replace_dir(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return target


# ---------------------------------------------------------------------------------------------
# The engine


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _reason(exc: Exception) -> str:
    text = str(exc)
    found = re.findall(r"\(\d+, '([^']+)'\)", text) or re.findall(r"\[Errno \d+\] ([^'\")]+)", text)
    return found[-1].strip() if found else type(exc).__name__


def client(build_id: str | None = None, timeout: int = 120):
    """A docker-py client that has answered a ping, or a one-line KilnError saying what to do."""
    import docker  # imported here: the rest of Kiln works without docker-py

    try:
        engine = docker.DockerClient(base_url=engine_address(), timeout=timeout)
        engine.ping()
        return engine
    except Exception as exc:  # docker-py wraps every transport failure differently
        target = f"php:{build_id}" if build_id else "php"
        raise KilnError(f"no Docker engine at {engine_address()} ({_reason(exc)}): start one "
                        f"(scripts/services.sh) or build without images: KILN_IMAGES=off doit {target}"
                        ) from None


def engine_image_id(name: str, timeout: int = 10) -> str | None:
    """The ID of image `name` in the engine; None if it is not there or no engine answers."""
    import docker

    try:
        engine = docker.DockerClient(base_url=engine_address(), timeout=timeout)
        try:
            return engine.images.get(name).id
        finally:
            engine.close()
    except docker.errors.ImageNotFound:
        return None
    except Exception:
        return None


def image_is_current(build: Build, kind: str) -> bool:
    """doit `uptodate` check: the engine still holds the very image the last run recorded
    (removed or retagged by hand: not up to date, so it is rebuilt)."""
    try:
        recorded = json.loads(record_path(build, kind).read_text())["engine"]["id"]
    except (OSError, ValueError, KeyError):
        return False
    return engine_image_id(tag(build, kind)) == recorded


def _build_in_engine(engine, context: Path, dockerfile: Path, name: str, buildargs: dict) -> str:
    """Run one build, streaming Docker's output; return the image ID."""
    image_id = None
    lines = []
    stream = engine.api.build(path=str(context), dockerfile=str(dockerfile), tag=name,
                              buildargs=buildargs, rm=True, forcerm=True, pull=False, decode=True)
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise KilnError(f"docker build of {name} failed: {detail.strip()}")
        text = chunk.get("stream", "")
        if text.strip():
            lines.append(text.rstrip())
            print(f"    {text.rstrip()}")
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    if image_id is None:
        found = [line.split()[-1] for line in lines if line.startswith("Successfully built")]
        if not found:
            raise KilnError(f"docker build of {name} reported no image ID")
        image_id = engine.images.get(found[-1]).id
    return image_id


def build(build: Build, kind: str) -> dict:
    """Build one image in the engine, then its wasip1/wasm OCI layout; write and return the
    record (tag, engine ID and size, OCI digest, layer sizes)."""
    engine = client(build.id)
    try:
        name = tag(build, kind)
        text, buildargs = render(build, kind)
        dockerfile = dockerfile_path(build, kind)
        atomic.write_text(dockerfile, text)
        context = stage_context(build, kind)
        image_id = _build_in_engine(engine, context, dockerfile, name, buildargs)
        image = engine.images.get(image_id)
        engine_config, layers = oci.from_docker_save(image.save(named=True), name)
    finally:
        engine.close()
    wasm_image = oci.image_from_engine_config(engine_config, layers, settings.source_date_epoch())
    built = oci.assemble(wasm_image, settings.source_date_epoch())
    oci.write_layout(layout_path(build, kind), {name: built})
    record = {
        "kind": kind,
        "tag": name,
        "engine": {
            "id": image_id,
            "size": image.attrs.get("Size"),
            "platform": f"{image.attrs.get('Os')}/{image.attrs.get('Architecture')}",
        },
        "oci": {"layout": str(layout_path(build, kind)), "platform": f"{oci.WASM_OS}/{oci.WASM_ARCH}",
                **built.report()},
        "buildargs": buildargs,
    }
    atomic.write_json(record_path(build, kind), record)
    return record


# ---------------------------------------------------------------------------------------------
# Size report

# The demo's figures for comparison (docker images, decimal MB).
REFERENCE_SIZES = [
    ("php:7.4.32-cli (Debian, traditional)", 166.0),
    ("php:7.4.32-cli-alpine (traditional)", 30.1),
    ("demo php-wasm:7.4.32-cli-aot (WasmEdge AOT)", 5.35),
]
SIZE_BUDGET = 6 * MB


def write_report(build: Build, kinds: list[str]) -> dict:
    records = {}
    for kind in kinds:
        try:
            records[kind] = json.loads(record_path(build, kind).read_text())
        except (OSError, ValueError) as exc:
            raise KilnError(f"{record_path(build, kind)}: no image record ({exc}); "
                            f"run doit php_image:{build.id}-{kind}") from None
    report = {
        "version": build.version,
        "flavour": build.flavour,
        "budget_bytes": SIZE_BUDGET,
        "images": {
            kind: {
                "tag": r["tag"],
                "size": r["engine"]["size"],
                "engine_platform": r["engine"]["platform"],
                "engine_id": r["engine"]["id"],
                "digest": r["oci"]["digest"],
                "platform": r["oci"]["platform"],
                "compressed_size": r["oci"]["size"],
                "layers": [{"digest": layer["digest"], "size": layer["uncompressed"],
                            "compressed_size": layer["size"]} for layer in r["oci"]["layers"]],
            }
            for kind, r in records.items()
        },
        "reference": [{"image": name, "size_mb": size} for name, size in REFERENCE_SIZES],
    }
    json_path, md_path = report_paths(build)
    atomic.write_json(json_path, report)
    atomic.write_text(md_path, markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    lines = [
        f"# Image sizes: PHP {report['version']} ({report['flavour']})",
        "",
        "Size is what `docker images` shows (uncompressed); pushed is what a pull transfers "
        "(gzip layers + manifest + config) for the wasip1/wasm image of the same content.",
        "",
        "| image | size | pushed | layers (uncompressed) | platform | digest |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for kind, image in report["images"].items():
        over = " (over the 6 MB budget)" if (image["size"] or 0) >= report["budget_bytes"] else ""
        layers = ", ".join(f"{layer['size'] / MB:.2f} MB" for layer in image["layers"])
        lines.append(f"| `{image['tag']}` | {image['size'] / MB:.2f} MB{over} | "
                     f"{image['compressed_size'] / MB:.2f} MB | {layers} | {image['platform']} | "
                     f"`{image['digest'][:19]}…` |")
    for ref in report["reference"]:
        lines.append(f"| {ref['image']} (demo, reference) | {ref['size_mb']:.2f} MB | | | | |")
    return "\n".join(lines) + "\n"
