"""Where each artifact of a build lives under build-output/ (one place to change it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import settings


def build_id(version: str, flavour: str) -> str:
    """Sub-task name and folder suffix: the version alone for the default flavour."""
    return version if flavour == "default" else f"{version}-{flavour}"


@dataclass(frozen=True)
class Build:
    """One (language, version, flavour) build and the paths of everything it makes."""

    language: str
    version: str
    flavour: str

    @property
    def id(self) -> str:
        return build_id(self.version, self.flavour)

    @property
    def root(self) -> Path:
        return settings.build_output() / self.language / f"{self.language}-{self.id}"

    @property
    def pristine(self) -> Path:
        return settings.build_output() / self.language / "pristine" / f"{self.language}-{self.version}"

    @property
    def pristine_stamp(self) -> Path:
        return self.pristine / ".kiln-extracted.json"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def patched_stamp(self) -> Path:
        return self.src / ".kiln-patched.json"

    @property
    def script(self) -> Path:
        return self.root / "wl-build"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def module(self, sapi: str, aot: bool = False) -> Path:
        return self.bin / f"{sapi}.{'cwasm' if aot else 'wasm'}"

    @property
    def smoke_report(self) -> Path:
        return self.root / "smoke.json"


def source_archive(filename: str) -> Path:
    return settings.sources_dir() / filename
