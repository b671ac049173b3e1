"""Load a language recipe (languages/<name>/recipe.toml) and check it against its schema.

Every mistake in a recipe is reported as `file:line: what is wrong (how to fix)`,
so a bad edit fails before any task runs.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KilnError
from .versions import ANY, Version, VersionRange

LANGUAGES = Path(__file__).resolve().parent.parent / "languages"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# PHP's VM dispatch kinds a build may ask zend_vm_gen.php for. CALL is what the release ships
# (generated HYBRID, which is CALL without GCC global registers, as on wasm).
VM_KINDS = ("CALL", "SWITCH", "GOTO", "TAILCALL")


@dataclass(frozen=True)
class Patch:
    file: Path
    when: VersionRange
    why: str
    # The patch edits configure's sources (config.m4, configure.ac): configure must be
    # regenerated from them before it runs, or the change has no effect.
    regenerates_configure: bool = False
    # Only these flavours' series carry the patch (None: every flavour's), like `when` for
    # releases: a patch only one flavour needs does not rebuild the others.
    flavours: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.file.name


@dataclass(frozen=True)
class VmKind:
    """One [[vm_kind]] entry: the VM `kind` for the releases in `when` (and `flavours`, if given),
    and extra compiler flags for Zend/zend_execute.c, the file the generated VM is compiled in."""
    kind: str
    when: VersionRange = ANY
    flavours: tuple[str, ...] = ()
    execute_cflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flavour:
    name: str
    description: str
    configure: tuple[str, ...]
    libraries: tuple[str, ...] = ()
    when: VersionRange = ANY
    # Appended to the toolchain's C flags for this flavour's PHP (clang keeps the last -O).
    cflags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    url: str
    signature_url: str | None
    archive_root: str
    versions: dict[str, str]
    testable: tuple[str, ...]
    configure: tuple[tuple[VersionRange, tuple[str, ...]], ...]
    patches: tuple[Patch, ...]
    flavours: dict[str, Flavour]
    outputs: dict[str, str]
    settings: dict = field(default_factory=dict)
    vm_kinds: tuple[VmKind, ...] = ()

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
        return Version.parse(version) in self.flavours[flavour].when

    def check_build(self, version: str, flavour: str) -> None:
        """A one-line error unless the recipe has this build (version, flavour, their range)."""
        self.check_version(version)
        when = self.check_flavour(flavour).when
        if not self.flavour_applies(flavour, version):
            raise KilnError(f"there is no {self.name} {version} {flavour} build: the {flavour} flavour "
                            f"{when.describe()} (when = \"{when}\" in "
                            f"{self.path.relative_to(LANGUAGES.parent)})")

    def patches_for(self, version: str, flavour: str = "default") -> list[Patch]:
        """The series of one build: the patches whose range covers the release and whose
        flavours (if they name any) include the build's."""
        v = Version.parse(version)
        return [p for p in self.patches
                if v in p.when and (p.flavours is None or flavour in p.flavours)]

    def regenerates_configure(self, version: str, flavour: str = "default") -> bool:
        """Whether a patch of this build's series needs configure regenerated."""
        return any(p.regenerates_configure for p in self.patches_for(version, flavour))

    def configure_args(self, version: str, flavour: str) -> list[str]:
        v = Version.parse(version)
        args = [a for when, group in self.configure if v in when for a in group]
        return args + list(self.check_flavour(flavour).configure)

    def vm(self, version: str, flavour: str) -> VmKind:
        """The [[vm_kind]] entry of one build: the last one covering it; CALL if none does."""
        v = Version.parse(version)
        chosen = VmKind(kind="CALL")
        for entry in self.vm_kinds:
            if v in entry.when and (not entry.flavours or flavour in entry.flavours):
                chosen = entry
        return chosen

    def vm_kind(self, version: str, flavour: str) -> str:
        return self.vm(version, flavour).kind

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
                             "configure", "patches", "flavours", "outputs", "settings", "vm_kind"},
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

    configure = []
    for index, entry in enumerate(data.get("configure", [])):
        _expect(check, entry, dict, "each [[configure]]", "[[configure]]")
        when = _range(check, entry.get("when", "@:"), *["[[configure]]"] * (index + 1), "when")
        configure.append((when, _string_list(check, entry.get("args", []), "configure args",
                                             *["[[configure]]"] * (index + 1))))

    patches = []
    for entry in data.get("patches", []):
        _expect(check, entry, dict, "each [[patches]]", "[[patches]]")
        unknown = set(entry) - {"file", "when", "why", "regenerates_configure", "flavours"}
        file = _expect(check, entry.get("file"), str, "patch `file`", "[[patches]]")
        if unknown:
            check.fail(f"patch {file}: unknown key(s) {', '.join(sorted(unknown))}", file)
        patch_path = path.parent / "patches" / file
        if not patch_path.is_file():
            check.fail(f"patch file {patch_path} does not exist", file)
        why = entry.get("why", "")
        _expect(check, why, str, "patch `why`", file)
        regenerates = _expect(check, entry.get("regenerates_configure", False), bool,
                              "patch `regenerates_configure`", file)
        only = entry.get("flavours")
        if only is not None:
            only = tuple(_string_list(check, only, "patch `flavours`", file))
        patches.append(Patch(patch_path, _range(check, entry.get("when", "@:"), file), why, regenerates, only))

    flavours = {}
    for flavour, entry in _expect(check, data["flavours"], dict, "[flavours]", "[flavours").items():
        header = f"[flavours.{flavour}]"
        if not _NAME.match(flavour):
            check.fail(f"flavour name {flavour!r} must be lowercase letters, digits, - or _", header)
        _expect(check, entry, dict, header, header)
        unknown = set(entry) - {"description", "configure", "libraries", "when", "cflags"}
        if unknown:
            check.fail(f"flavour {flavour}: unknown key(s) {', '.join(sorted(unknown))}", header)
        flavours[flavour] = Flavour(
            name=flavour,
            description=_expect(check, entry.get("description", ""), str, "description", header),
            configure=_string_list(check, entry.get("configure", []), "configure", header),
            libraries=_string_list(check, entry.get("libraries", []), "libraries", header),
            when=_range(check, entry.get("when", "@:"), header),
            cflags=_string_list(check, entry.get("cflags", []), "cflags", header, "cflags"),
        )
    if "default" not in flavours:
        check.fail("a [flavours.default] table is required", "[flavours")
    for patch in patches:
        for wanted in patch.flavours or ():
            if wanted not in flavours:
                check.fail(f"patch {patch.name}: unknown flavour {wanted!r} in `flavours` "
                           f"(known: {', '.join(flavours)})", patch.name)

    outputs = _expect(check, data["outputs"], dict, "[outputs]", "[outputs]")
    for module, built in outputs.items():
        if not _NAME.match(module) or not isinstance(built, str):
            check.fail(f"output {module!r} must map a module name to a path in the built tree", "[outputs]")

    settings = _expect(check, data.get("settings", {}), dict, "[settings]", "[settings]")
    vm_kinds = _vm_kinds(check, _expect(check, data.get("vm_kind", []), list, "vm_kind (an array of "
                                        "[[vm_kind]] tables)", "vm_kind"), flavours)
    return Recipe(
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
        vm_kinds=vm_kinds,
    )


def _vm_kinds(check: _Checker, entries: list, flavours: dict) -> tuple[VmKind, ...]:
    result = []
    for index, entry in enumerate(entries):
        at = ["[[vm_kind]]"] * (index + 1)
        _expect(check, entry, dict, "each [[vm_kind]]", *at)
        unknown = set(entry) - {"kind", "when", "flavours", "execute_cflags"}
        if unknown:
            check.fail(f"[[vm_kind]]: unknown key(s) {', '.join(sorted(unknown))} "
                       "(allowed: kind, when, flavours, execute_cflags)", *at, sorted(unknown)[0])
        kind = entry.get("kind")
        if kind not in VM_KINDS:
            check.fail(f"[[vm_kind]] kind must be one of {', '.join(VM_KINDS)}, not {kind!r}", *at, "kind")
        names = _string_list(check, entry.get("flavours", []), "[[vm_kind]] flavours", *at, "flavours")
        for name in names:
            if name not in flavours:
                check.fail(f"[[vm_kind]] names unknown flavour {name!r} (known: {', '.join(flavours)})",
                           *at, "flavours")
        cflags = _string_list(check, entry.get("execute_cflags", []), "[[vm_kind]] execute_cflags",
                              *at, "execute_cflags")
        result.append(VmKind(kind=kind, when=_range(check, entry.get("when", "@:"), *at, "when"),
                             flavours=names, execute_cflags=cflags))
    return tuple(result)


_loaded: dict[str, Recipe] = {}


def language(name: str) -> Recipe:
    """The recipe of one language, loaded once per process."""
    if name not in _loaded:
        _loaded[name] = load(LANGUAGES / name / "recipe.toml")
    return _loaded[name]
