"""Load a language recipe (languages/<name>/recipe.toml) and check it against its schema.

Every mistake in a recipe is reported as `file:line: what is wrong (how to fix)`,
so a bad edit fails before any task runs.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import variants as _variants
from .errors import KilnError
from .variants import Flavour, Resolved, Variant
from .versions import Version, VersionRange
from .when import ALWAYS, When

LANGUAGES = Path(__file__).resolve().parent.parent / "languages"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# PHP's VM dispatch kinds a build may ask zend_vm_gen.php for. CALL is what the release ships
# (generated HYBRID, which is CALL without GCC global registers, as on wasm).
VM_KINDS = ("CALL", "SWITCH", "GOTO", "TAILCALL")


@dataclass(frozen=True)
class Patch:
    file: Path
    # The releases and variants whose builds carry it ("@8.2 +opcache"): a patch only one
    # feature needs does not rebuild the others.
    when: When
    why: str
    # The patch edits configure's sources (config.m4, configure.ac): configure must be
    # regenerated from them before it runs, or the change has no effect.
    regenerates_configure: bool = False

    @property
    def name(self) -> str:
        return self.file.name


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    url: str
    signature_url: str | None
    archive_root: str
    versions: dict[str, str]
    testable: tuple[str, ...]
    configure: tuple[tuple[When, tuple[str, ...]], ...]
    patches: tuple[Patch, ...]
    flavours: dict[str, Flavour]
    outputs: dict[str, str]
    settings: dict = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    # A build's VM unless one of its variants names another (CALL: the one the release ships).
    vm_kind_default: str = "CALL"

    _resolved: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def check_version(self, version: str) -> str:
        if version not in self.versions:
            known = ", ".join(self.versions)
            raise KilnError(
                f"unknown {self.name} version {version!r}: known versions are {known} "
                f"(add a line to {self.path.relative_to(LANGUAGES.parent)} to support another)"
            )
        return version

    def check_flavour(self, flavour: str) -> Flavour:
        if flavour not in self.flavours:
            known = ", ".join(self.flavours)
            raise KilnError(f"unknown {self.name} flavour {flavour!r}: known flavours are {known}")
        return self.flavours[flavour]

    def flavour_applies(self, flavour: str, version: str) -> bool:
        return _variants.unavailable(self, self.flavours[flavour], version) is None

    def check_build(self, version: str, flavour: str) -> None:
        """A one-line error unless the recipe has this build (version, flavour, their range)."""
        self.check_version(version)
        why = _variants.unavailable(self, self.check_flavour(flavour), version)
        if why:
            raise KilnError(f"there is no {self.name} {version} {flavour} build: {why}")

    def resolve(self, version: str, flavour: str = "default") -> Resolved:
        """What one build is: its variants, configure arguments, flags, VM, libraries, series."""
        key = (version, flavour)
        if key not in self._resolved:
            self._resolved[key] = _variants.resolve(self, version, flavour)
        return self._resolved[key]

    # Shorthands for one part of resolve(), which decides them all.
    def patches_for(self, version: str, flavour: str = "default") -> list[Patch]:
        return list(self.resolve(version, flavour).patches)

    def regenerates_configure(self, version: str, flavour: str = "default") -> bool:
        return self.resolve(version, flavour).regenerates_configure

    def configure_args(self, version: str, flavour: str) -> list[str]:
        return list(self.resolve(version, flavour).configure)

    def vm_kind(self, version: str, flavour: str) -> str:
        return self.resolve(version, flavour).vm_kind

    def source_name(self, version: str) -> str:
        return Path(self.url.format(version=version)).name

    def urls(self, version: str) -> list[str]:
        return [self.url.format(version=version)]


class _Checker:
    """Finds the line a key sits on, so schema errors can point at it."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def line_of(self, *needles: str) -> int:
        """1-based line of the last needle, each searched after the previous one's line."""
        after, found = 0, 0
        for needle in needles:
            for number in range(after, len(self.lines)):
                if needle in self.lines[number]:
                    found, after = number, number + 1
                    break
        return found + 1

    def fail(self, message: str, *needles: str):
        where = f"{self.path}:{self.line_of(*needles)}" if needles else str(self.path)
        raise KilnError(f"{where}: {message}")


def _expect(check: _Checker, value, kind, what: str, *needles: str):
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        check.fail(f"{what} must be a {name}, not {type(value).__name__}", *needles)
    return value


def _string_list(check: _Checker, value, what: str, *needles: str) -> tuple[str, ...]:
    _expect(check, value, list, what, *needles)
    for item in value:
        _expect(check, item, str, f"every entry of {what}", *needles)
    return tuple(value)


def _range(check: _Checker, text, *needles: str) -> VersionRange:
    _expect(check, text, str, "`when`", *needles)
    try:
        return VersionRange.parse(text)
    except ValueError as exc:
        check.fail(str(exc), *needles)


def read_toml(path: Path, what: str = "recipe") -> tuple[dict, _Checker]:
    """Read and parse a recipe-like TOML file; failures name the file (and line)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise KilnError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with "(at line L, column C)": put the line where every
        # other recipe error has it, FILE:LINE: what is wrong.
        message = str(exc)
        found = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if found:
            message = f"{message[:found.start()]} (column {found.group(2)})"
        where = f"{path}:{found.group(1)}" if found else str(path)
        raise KilnError(f"{where}: not valid TOML: {message}") from None
    return data, _Checker(path, text)


def check_keys(check: _Checker, data: dict, allowed: set[str], required: tuple[str, ...]) -> None:
    """Top-level keys: nothing unknown (it is a typo), nothing required missing."""
    for key in data:
        if key not in allowed:
            check.fail(f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})", key)
    for key in required:
        if key not in data:
            check.fail(f"missing required key {key!r}")


def load(path: Path | str) -> Recipe:
    path = Path(path)
    data, check = read_toml(path)
    check_keys(check, data, {"name", "url", "signature_url", "archive_root", "testable", "versions",
                             "configure", "patches", "flavours", "outputs", "settings", "vm_kind",
                             "variants"},
               ("name", "url", "versions", "flavours", "outputs"))

    name = _expect(check, data["name"], str, "name", "name")
    url = _expect(check, data["url"], str, "url", "url")
    if "{version}" not in url:
        check.fail("url must contain {version}", "url")

    versions = _expect(check, data["versions"], dict, "[versions]", "[versions]")
    if not versions:
        check.fail("[versions] is empty: add at least one release", "[versions]")
    for version, sha in versions.items():
        try:
            Version.parse(version)
        except ValueError as exc:
            check.fail(str(exc), "[versions]", version)
        if not isinstance(sha, str) or not _SHA256.match(sha):
            check.fail(f"sha256 of {version} must be 64 lowercase hex digits", "[versions]", version)

    testable = _string_list(check, data.get("testable", []), "testable", "testable")
    for version in testable:
        if version not in versions:
            check.fail(f"testable version {version!r} is not listed under [versions]", "testable")

    vm_kind = data.get("vm_kind", "CALL")
    if vm_kind not in VM_KINDS:
        check.fail(f"vm_kind must be one of {', '.join(VM_KINDS)}, not {vm_kind!r}", "vm_kind")
    variants = _variants.parse_variants(
        check, _expect(check, data.get("variants", {}), dict, "[variants]", "[variants"), VM_KINDS)

    configure = []
    for index, entry in enumerate(data.get("configure", [])):
        at = ["[[configure]]"] * (index + 1)
        _expect(check, entry, dict, "each [[configure]]", "[[configure]]")
        when = _when(check, entry.get("when", ""), variants, *at, "when")
        configure.append((when, _string_list(check, entry.get("args", []), "configure args", *at)))

    patches = []
    for entry in data.get("patches", []):
        _expect(check, entry, dict, "each [[patches]]", "[[patches]]")
        unknown = set(entry) - {"file", "when", "why", "regenerates_configure"}
        file = _expect(check, entry.get("file"), str, "patch `file`", "[[patches]]")
        if unknown:
            hint = (" (name the variant that needs it in `when`, e.g. \"@8.2 +opcache\")"
                    if "flavours" in unknown else "")
            check.fail(f"patch {file}: unknown key(s) {', '.join(sorted(unknown))}{hint}", file)
        patch_path = path.parent / "patches" / file
        if not patch_path.is_file():
            check.fail(f"patch file {patch_path} does not exist", file)
        why = entry.get("why", "")
        _expect(check, why, str, "patch `why`", file)
        regenerates = _expect(check, entry.get("regenerates_configure", False), bool,
                              "patch `regenerates_configure`", file)
        patches.append(Patch(patch_path, _when(check, entry.get("when", ""), variants, file), why, regenerates))

    flavours = _variants.parse_flavours(
        check, _expect(check, data["flavours"], dict, "[flavours]", "[flavours"), variants)

    outputs = _expect(check, data["outputs"], dict, "[outputs]", "[outputs]")
    for module, built in outputs.items():
        if not _NAME.match(module) or not isinstance(built, str):
            check.fail(f"output {module!r} must map a module name to a path in the built tree", "[outputs]")

    settings = _expect(check, data.get("settings", {}), dict, "[settings]", "[settings]")
    recipe = Recipe(
        name=name,
        path=path,
        url=url,
        signature_url=data.get("signature_url"),
        archive_root=_expect(check, data.get("archive_root", f"{name}-{{version}}"), str,
                             "archive_root", "archive_root"),
        versions=dict(sorted(versions.items(), key=lambda kv: Version.parse(kv[0]))),
        testable=testable,
        configure=tuple(configure),
        patches=tuple(patches),
        flavours=flavours,
        outputs=outputs,
        settings=settings,
        variants=variants,
        vm_kind_default=vm_kind,
    )
    for flavour in flavours.values():
        _variants.check_flavour_variants(recipe, check, flavour)
        for version in recipe.versions:   # contradictions in arguments, per build, before any task
            if recipe.flavour_applies(flavour.name, version):
                recipe.resolve(version, flavour.name)
    return recipe


def _when(check: _Checker, text, variants: dict, *needles: str) -> When:
    """A `when` ("@8.2 +opcache"): its range parsed, every variant it names declared."""
    _expect(check, text, str, "`when`", *needles)
    try:
        when = When.parse(text) if text else ALWAYS
    except ValueError as exc:
        check.fail(str(exc), *needles)
    for name in sorted(when.variants - set(variants)):
        check.fail(f"`when` = \"{text}\" names unknown variant {name!r} (known: {', '.join(variants)})",
                   *needles)
    return when


_loaded: dict[str, Recipe] = {}


def language(name: str) -> Recipe:
    """The recipe of one language, loaded once per process."""
    if name not in _loaded:
        _loaded[name] = load(LANGUAGES / name / "recipe.toml")
    return _loaded[name]
