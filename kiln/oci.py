"""OCI images and wasm artifacts, assembled reproducibly and moved with the distribution API.

Why this exists: Docker 20.10 refuses the `wasip1/wasm` platform, so the images it builds say
linux/amd64. Kiln takes what the engine built (its files and its config) and re-packs it into
an OCI image layout of its own whose config says os `wasip1`, architecture `wasm`:

- every layer is a tar with entries sorted by name, owner 0:0 with no names, mtime clamped to
  SOURCE_DATE_EPOCH, then gzip with mtime 0 and no file name;
- config, manifest and index are compact JSON with sorted keys;
- `created` comes from SOURCE_DATE_EPOCH and no build history is recorded,

so the same inputs give the same digests on every machine and every run. The layout is pushed
with plain HTTP (blob upload POST + PUT, manifest PUT) and pulled back the same way. Bare
modules go out as wasm OCI artifacts in the CNCF layout: config
`application/vnd.wasm.config.v0+json`, one `application/wasm` layer.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import requests

from . import atomic
from .errors import KilnError

OCI_LAYOUT_VERSION = "1.0.0"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
WASM_CONFIG = "application/vnd.wasm.config.v0+json"
WASM_LAYER = "application/wasm"
REF_NAME = "org.opencontainers.image.ref.name"

WASM_OS, WASM_ARCH = "wasip1", "wasm"

# The parts of an engine image's config that describe how to run it; everything else
# (hostname, container id, builder details) is the engine's business and not reproducible.
RUN_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                   "Labels", "StopSignal")
# Labels that are copied to the manifest's annotations too (where registries and shims look).
ANNOTATED_LABEL_PREFIXES = ("org.opencontainers.image.", "module.wasm.image/")

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def canonical_json(value) -> bytes:
    """Compact, key-sorted UTF-8 JSON: one byte string per value, so one digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data), **extra}


# ---------------------------------------------------------------------------------------------
# Layers


@dataclass
class Entry:
    """One file system entry of a layer, in the normalized form Kiln writes."""
    path: str            # relative, no leading "/" or "./"; directories without trailing "/"
    kind: bytes          # tarfile.REGTYPE, DIRTYPE, SYMTYPE or LNKTYPE
    mode: int
    data: bytes = b""
    linkname: str = ""


def _clean_path(name: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".")]
    if any(p == ".." for p in parts):
        raise KilnError(f"layer entry {name!r} climbs out of the image root")
    return "/".join(parts)


def read_layer(tar_bytes: bytes) -> list[Entry]:
    """The entries of an (uncompressed or gzip) layer tar, normalized."""
    if tar_bytes[:2] == b"\x1f\x8b":
        tar_bytes = gzip.decompress(tar_bytes)
    entries: dict[str, Entry] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for info in tar:
            path = _clean_path(info.name)
            if not path:
                continue
            if info.isreg():
                data = tar.extractfile(info).read()
                entries[path] = Entry(path, tarfile.REGTYPE, info.mode & 0o7777, data)
            elif info.isdir():
                entries[path] = Entry(path, tarfile.DIRTYPE, info.mode & 0o7777)
            elif info.issym():
                entries[path] = Entry(path, tarfile.SYMTYPE, 0o777, linkname=info.linkname)
            elif info.islnk():
                entries[path] = Entry(path, tarfile.LNKTYPE, info.mode & 0o7777,
                                      linkname=_clean_path(info.linkname))
            # Devices and fifos have no meaning for a wasm guest: dropped.
    return list(entries.values())


def write_layer(entries: Iterable[Entry], mtime: int) -> bytes:
    """A reproducible tar: sorted by path, parents first, 0:0 owners, fixed mtime."""
    by_path = {e.path: e for e in entries}
    # Every parent directory gets its own entry, as image tools expect.
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while str(parent) not in (".", "") and str(parent) not in by_path:
            by_path[str(parent)] = Entry(str(parent), tarfile.DIRTYPE, 0o755)
            parent = parent.parent
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(by_path, key=lambda p: PurePosixPath(p).parts):
            e = by_path[path]
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = e.kind, e.mode, mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if e.kind == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                info.linkname = e.linkname
                tar.addfile(info)
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no timestamp and no file name: the same input always compresses the same."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Images in memory


@dataclass
class Image:
    """An image as Kiln handles it: run config plus uncompressed layer tars (base first)."""
    config: dict                       # the OCI config's "config" object (Entrypoint, Env, ...)
    layers: list[bytes]                # uncompressed tars
    os: str = WASM_OS
    architecture: str = WASM_ARCH
    created: str | None = None
    annotations: dict = field(default_factory=dict)

    @property
    def labels(self) -> dict:
        return self.config.get("Labels") or {}


def from_docker_save(tar_stream: Iterable[bytes] | bytes, tag: str | None = None) -> tuple[dict, list[bytes]]:
    """Config and layers (uncompressed) of one image in a `docker save` stream."""
    data = tar_stream if isinstance(tar_stream, bytes) else b"".join(tar_stream)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        def member(name: str) -> bytes:
            try:
                return tar.extractfile(name).read()
            except (KeyError, AttributeError):
                raise KilnError(f"docker save output lacks {name}") from None
        manifest = json.loads(member("manifest.json"))
        chosen = next((m for m in manifest if tag and tag in (m.get("RepoTags") or [])), manifest[0])
        config = json.loads(member(chosen["Config"]))
        layers = [member(name) for name in chosen["Layers"]]
    return config, layers


def image_from_engine_config(engine_config: dict, layers: list[bytes], epoch: int) -> Image:
    """Re-describe an engine-built image as a wasm image (wasip1/wasm), keeping how it runs."""
    run = engine_config.get("config") or engine_config.get("Config") or {}
    config = {k: run[k] for k in RUN_CONFIG_KEYS if run.get(k)}
    labels = config.get("Labels") or {}
    annotations = {k: v for k, v in labels.items() if k.startswith(ANNOTATED_LABEL_PREFIXES)}
    return Image(config=config, layers=layers, created=rfc3339(epoch), annotations=annotations)


@dataclass
class Built:
    """The blobs of an assembled image and the facts the build report records."""
    manifest: bytes
    config: bytes
    layers: list[tuple[bytes, int]]  # (gzip blob, uncompressed size)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def size(self) -> int:
        """What a pull transfers: manifest, config and compressed layers."""
        return len(self.manifest) + len(self.config) + sum(len(b) for b, _ in self.layers)

    def blobs(self) -> list[tuple[str, bytes]]:
        return [(sha256_digest(self.config), self.config)] + [(sha256_digest(b), b) for b, _ in self.layers]

    def report(self) -> dict:
        return {
            "digest": self.digest,
            "size": self.size,
            "config": {"digest": sha256_digest(self.config), "size": len(self.config)},
            "layers": [{"digest": sha256_digest(b), "size": len(b), "uncompressed": n}
                       for b, n in self.layers],
        }


def assemble(image: Image, mtime: int) -> Built:
    """Normalize the layers and write config and manifest; pure function of its inputs."""
    diff_ids, layers = [], []
    for raw in image.layers:
        entries = read_layer(raw)
        if not entries:
            continue  # metadata-only steps (LABEL, ENV...) leave empty layers: not worth a blob
        tar = write_layer(entries, mtime)
        diff_ids.append(sha256_digest(tar))
        layers.append((gzip_bytes(tar), len(tar)))
    config = {
        "architecture": image.architecture,
        "os": image.os,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if image.created:
        config["created"] = image.created
    config_bytes = canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, config_bytes),
        "layers": [descriptor(LAYER_GZIP, blob) for blob, _ in layers],
    }
    if image.annotations:
        manifest["annotations"] = dict(image.annotations)
    return Built(canonical_json(manifest), config_bytes, layers)


# ---------------------------------------------------------------------------------------------
# OCI image layout on disk


def write_layout(target: Path, images: dict[str, Built]) -> None:
    """An OCI image layout holding `images` (tag -> image), written atomically as a folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        blobs = staged / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        manifests = []
        for tag in sorted(images):
            built = images[tag]
            for digest, data in [(built.digest, built.manifest), *built.blobs()]:
                (blobs / digest.split(":", 1)[1]).write_bytes(data)
            config = json.loads(built.config)
            manifests.append(descriptor(MANIFEST, built.manifest,
                                        platform={"os": config["os"], "architecture": config["architecture"]},
                                        annotations={REF_NAME: tag}))
        (staged / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        (staged / "index.json").write_bytes(canonical_json(
            {"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}))
        for path in staged.rglob("*"):
            os.utime(path, (0, 0), follow_symlinks=False)
        atomic.replace_dir(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged)


class Layout:
    """Read access to an OCI image layout folder."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        try:
            self.index = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError) as exc:
            raise KilnError(f"{self.root}: not an OCI image layout ({exc})") from None

    def blob(self, digest: str) -> bytes:
        if not _DIGEST.match(digest):
            raise KilnError(f"{self.root}: bad digest {digest!r}")
        data = (self.root / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        if sha256_digest(data) != digest:
            raise KilnError(f"{self.root}: blob {digest} is corrupt")
        return data

    def tags(self) -> list[str]:
        return [m.get("annotations", {}).get(REF_NAME, "") for m in self.index["manifests"]]

    def manifest_descriptor(self, tag: str | None = None) -> dict:
        manifests = self.index["manifests"]
        if tag is None and len(manifests) == 1:
            return manifests[0]
        for m in manifests:
            if m.get("annotations", {}).get(REF_NAME) == tag:
                return m
        raise KilnError(f"{self.root}: no image tagged {tag!r} (it has {', '.join(self.tags())})")

    def built(self, tag: str | None = None) -> Built:
        manifest = self.blob(self.manifest_descriptor(tag)["digest"])
        doc = json.loads(manifest)
        config = self.blob(doc["config"]["digest"])
        layers = []
        for layer in doc["layers"]:
            blob = self.blob(layer["digest"])
            layers.append((blob, len(gzip.decompress(blob)) if blob[:2] == b"\x1f\x8b" else len(blob)))
        return Built(manifest, config, layers)


def uncompressed_layers(built: Built) -> list[bytes]:
    return [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b, _ in built.layers]


# ---------------------------------------------------------------------------------------------
# Registry (distribution API v2) through requests


@dataclass(frozen=True)
class Reference:
    registry: str       # host[:port]
    repository: str     # path, e.g. org/php-wasm
    tag: str | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.ref}")


def looks_like_registry(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str, default_registry: str | None = None) -> Reference:
    """host[:port]/path[:tag][@sha256:...]; without a host, `default_registry` is used."""
    name, _, digest = text.partition("@")
    first, sep, rest = name.partition("/")
    if sep and looks_like_registry(first):
        registry, path = first, rest
    elif default_registry:
        registry, path = default_registry, name
    else:
        raise KilnError(f"{text!r} names no registry (expected host:port/repository:tag)")
    path, tag = (path.rsplit(":", 1) + [None])[:2] if ":" in path.rsplit("/", 1)[-1] else (path, None)
    if not path:
        raise KilnError(f"{text!r} names no repository")
    return Reference(registry.removeprefix("http://").removeprefix("https://"), path, tag, digest or None)


def repository_path(repository: str) -> str:
    """KILN_IMAGE_REPO without a leading registry host (`ghcr.io/org/php-wasm` -> `org/php-wasm`)."""
    first, sep, rest = repository.partition("/")
    return rest if sep and looks_like_registry(first) else repository


def _connection_reason(exc: Exception) -> str:
    """What a failed connection ran into, in a few words (requests nests the OS error deep)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return found[-1].strip() if found else type(exc).__name__


def _error_detail(response: requests.Response) -> str:
    """The distribution API's error codes and messages, else the start of the body, one line."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    except (ValueError, AttributeError):
        text = response.text
    return " ".join(text.split())[:200]


class Registry:
    """A small distribution-API client: enough to push and pull images and artifacts."""

    def __init__(self, address: str, username: str | None = None, password: str | None = None,
                 timeout: float = 60):
        scheme = "https"
        if address.startswith(("http://", "https://")):
            scheme, _, address = address.partition("://")
        host = address.rsplit(":", 1)[0].strip("[]")
        if scheme == "https" and (host in ("localhost", "::1") or host.startswith("127.")):
            scheme = "http"  # loopback registries speak plain HTTP, as Docker assumes too
        self.address = address
        self.base = f"{scheme}://{address}"
        self.auth = (username, password) if username else None
        self.timeout = timeout
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}

    # -- transport --------------------------------------------------------------------------

    def _request(self, method: str, url: str, scope: str, **kwargs) -> requests.Response:
        if not url.startswith("http"):
            url = self.base + url
        headers = dict(kwargs.pop("headers", {}))
        for attempt in range(2):
            if scope in self._tokens:
                headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                                auth=None if "Authorization" in headers else self.auth,
                                                **kwargs)
            except requests.RequestException as exc:
                raise KilnError(f"registry {self.address} unreachable ({_connection_reason(exc)}): "
                                f"start one (scripts/services.sh) or check KILN_REGISTRY") from None
            if response.status_code == 401 and attempt == 0 and self._authenticate(response, scope):
                continue
            return response
        return response

    def _authenticate(self, response: requests.Response, scope: str) -> bool:
        """Bearer token flow (ghcr.io, Docker Hub...): fetch a token for `scope`."""
        challenge = response.headers.get("WWW-Authenticate", "")
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        params["scope"] = scope
        try:
            token = self.session.get(realm, params=params, auth=self.auth, timeout=self.timeout)
            token.raise_for_status()
            body = token.json()
        except (requests.RequestException, ValueError) as exc:
            raise KilnError(f"registry {self.address}: cannot get a token from {realm} ({exc})") from None
        self._tokens[scope] = body.get("token") or body.get("access_token") or ""
        return bool(self._tokens[scope])

    def _check(self, response: requests.Response, what: str, *ok: int) -> requests.Response:
        """`response` if its status is one of `ok`; otherwise one line: registry, status, fix."""
        status = response.status_code
        if status in ok:
            return response
        said = f"HTTP {status} {response.reason or ''}".strip()
        detail = _error_detail(response)
        if detail:
            said += f" ({detail})"
        if status == 401:
            fix = ("set KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD to an account the registry "
                   "accepts")
        elif status == 403:
            fix = ("use credentials with access to that repository (KILN_REGISTRY_USER, "
                   "KILN_REGISTRY_PASSWORD) or another KILN_IMAGE_REPO")
        elif status >= 500:
            fix = "the registry itself failed: check its logs, then rerun"
        else:
            fix = "check KILN_REGISTRY and KILN_IMAGE_REPO"
        raise KilnError(f"registry {self.address}: {what} failed with {said}: {fix}")

    # -- blobs ----------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        scope = f"repository:{repository}:pull"
        return self._request("HEAD", f"/v2/{repository}/blobs/{digest}", scope).status_code == 200

    def push_blob(self, repository: str, data: bytes, digest: str | None = None) -> str:
        digest = digest or sha256_digest(data)
        if self.has_blob(repository, digest):
            return digest
        scope = f"repository:{repository}:pull,push"
        started = self._check(self._request("POST", f"/v2/{repository}/blobs/uploads/", scope),
                              f"starting the upload of {digest} to {repository}", 202)
        location = started.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        self._check(self._request("PUT", location, scope, data=data,
                                  headers={"Content-Type": "application/octet-stream"}),
                    f"uploading {digest} to {repository}", 201)
        return digest

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self._check(self._request("GET", f"/v2/{repository}/blobs/{digest}",
                                             f"repository:{repository}:pull"),
                               f"fetching blob {digest} from {repository}", 200)
        if sha256_digest(response.content) != digest:
            raise KilnError(f"registry {self.address}: blob {digest} of {repository} is corrupt")
        return response.content

    # -- manifests ------------------------------------------------------------------------------

    def put_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str) -> str:
        response = self._check(self._request("PUT", f"/v2/{repository}/manifests/{reference}",
                                             f"repository:{repository}:pull,push", data=manifest,
                                             headers={"Content-Type": media_type}),
                               f"pushing manifest {repository}:{reference}", 201)
        expected = sha256_digest(manifest)
        returned = response.headers.get("Docker-Content-Digest", expected)
        if returned != expected:
            raise KilnError(f"registry {self.address} stored {repository}:{reference} as {returned}, "
                            f"expected {expected}")
        return expected

    _ACCEPT = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, or None when the registry does not have it."""
        response = self._request("HEAD", f"/v2/{repository}/manifests/{reference}",
                                 f"repository:{repository}:pull", headers={"Accept": self._ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, f"looking up {repository}:{reference}", 200)
        return response.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        response = self._check(self._request("GET", f"/v2/{repository}/manifests/{reference}",
                                             f"repository:{repository}:pull",
                                             headers={"Accept": self._ACCEPT}),
                               f"fetching manifest {repository}:{reference}", 200)
        if reference.startswith("sha256:") and sha256_digest(response.content) != reference:
            raise KilnError(f"registry {self.address}: manifest {reference} is corrupt")
        return response.content, response.headers.get("Content-Type", "").split(";")[0]

    # -- whole images and artifacts -------------------------------------------------------------

    def push_image(self, repository: str, tag: str, built: Built) -> str:
        for digest, data in built.blobs():
            self.push_blob(repository, data, digest)
        return self.put_manifest(repository, tag, built.manifest, MANIFEST)

    def pull_image(self, repository: str, reference: str,
                   platform: tuple[str, str] = (WASM_OS, WASM_ARCH)) -> Built:
        """An image by tag or digest; from an index, the manifest for `platform`."""
        manifest, media_type = self.get_manifest(repository, reference)
        doc = json.loads(manifest)
        if media_type in (INDEX, DOCKER_LIST) or "manifests" in doc:
            for m in doc["manifests"]:
                p = m.get("platform", {})
                if (p.get("os"), p.get("architecture")) == platform:
                    return self.pull_image(repository, m["digest"], platform)
            raise KilnError(f"{repository}:{reference} has no {platform[0]}/{platform[1]} image")
        config = self.get_blob(repository, doc["config"]["digest"])
        layers = []
        for layer in doc["layers"]:
            blob = self.get_blob(repository, layer["digest"])
            layers.append((blob, len(gzip.decompress(blob)) if blob[:2] == b"\x1f\x8b" else len(blob)))
        return Built(manifest, config, layers)

    def push_wasm_artifact(self, repository: str, tag: str, module: bytes, epoch: int,
                           annotations: dict | None = None) -> str:
        built = wasm_artifact(module, epoch, annotations)
        for digest, data in built.blobs():
            self.push_blob(repository, data, digest)
        return self.put_manifest(repository, tag, built.manifest, MANIFEST)

    def pull_wasm_artifact(self, repository: str, reference: str) -> bytes:
        manifest, _ = self.get_manifest(repository, reference)
        doc = json.loads(manifest)
        if doc.get("config", {}).get("mediaType") != WASM_CONFIG:
            raise KilnError(f"{repository}:{reference} is not a wasm artifact "
                            f"(config media type {doc.get('config', {}).get('mediaType')})")
        wasm = [layer for layer in doc.get("layers", []) if layer.get("mediaType") == WASM_LAYER]
        if len(wasm) != 1:
            raise KilnError(f"{repository}:{reference}: expected one {WASM_LAYER} layer, found {len(wasm)}")
        return self.get_blob(repository, wasm[0]["digest"])


def wasm_artifact(module: bytes, epoch: int, annotations: dict | None = None) -> Built:
    """A module as a wasm OCI artifact (CNCF TAG Runtime layout), reproducibly."""
    layer_digest = sha256_digest(module)
    config = canonical_json({
        "architecture": WASM_ARCH,
        "os": WASM_OS,
        "created": rfc3339(epoch),
        "layerDigests": [layer_digest],
    })
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(WASM_CONFIG, config),
        "layers": [descriptor(WASM_LAYER, module)],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return Built(canonical_json(manifest), config, [(module, len(module))])


def iter_layer_files(layers: Iterable[bytes]) -> Iterator[tuple[int, tarfile.TarFile]]:
    """Each uncompressed layer opened as a tar (helper for root file system extraction)."""
    for number, data in enumerate(layers):
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            yield number, tar
