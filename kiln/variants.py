"""Variants and flavours of a recipe, Spack-style, and what one build of them resolves to.

A variant is a feature a build has or not, declared once ([variants.<name>]): the configure
arguments it adds, the libraries it links, C flags, a VM kind, the releases it exists for and
the variants it requires or conflicts with. Patches and [[configure]] entries name variants in
their `when` ("@8.2 +opcache", "~xml"). A flavour is a named set of variants and a release range,
nothing more: `variants` are on for every release of the flavour (a variant missing from one of
them is a recipe error), `where_available` only for the releases their own `when` covers (the
wordpress flavour's GOTO VM and OPcache on 8.x, not on 7.4). `resolve()` turns (release, flavour)
into the one list of each that a build uses.

PHP records its configure command in the binary (phpinfo's "Configure Command"), so the order of
the arguments is part of the modules' bytes, though not of their meaning: [[configure]] entries
in file order, then the variants' in declaration order. Meaning never depends on it: an argument
said twice, or a feature both enabled and disabled (--enable-x/--disable-x, --with-x/--without-x),
is an error unless the later variant declares that it `replaces` the earlier argument, which is
then taken out of the list (OPcache's --enable-opcache replaces the common --disable-opcache).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import settings
from .errors import KilnError
from .versions import ANY, Version, VersionRange

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# `{prefix:bzip2}` in a configure argument: where that library is installed, for extensions whose
# configure looks in a folder instead of asking pkg-config (ext/bz2). Filled in by kiln/spec.py.
PREFIX = re.compile(r"\{prefix:([a-z0-9][a-z0-9_+.-]*)\}")
_FEATURE = re.compile(r"^--(?:enable|disable|with|without)-([A-Za-z0-9_-]+)(?:=.*)?$")
KEYS = {"description", "configure", "libraries", "cflags", "vm_kind", "execute_cflags", "when",
        "requires", "conflicts", "replaces", "post_link", "merge"}
FLAVOUR_KEYS = {"description", "variants", "where_available", "when"}


@dataclass(frozen=True)
class Variant:
    name: str
    line: int                      # where it is declared, for messages
    description: str = ""
    configure: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    cflags: tuple[str, ...] = ()   # after the toolchain's (clang keeps the last -O)
    vm_kind: str | None = None
    execute_cflags: tuple[str, ...] = ()
    when: VersionRange = ANY       # the releases it exists for
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    replaces: tuple[str, ...] = ()  # earlier [[configure]] arguments it takes out (its own say otherwise)
    post_link: tuple[str, ...] = ()  # wasm-opt options run on the linked modules (php_collect)
    # WebAssembly text modules (relative to the recipe's folder) wasm-merge joins to every
    # linked module, each under its file name as the import module name (kiln/wasm_merge.py).
    merge: tuple[str, ...] = ()


@dataclass(frozen=True)
class Flavour:
    name: str
    line: int
    description: str = ""
    variants: tuple[str, ...] = ()
    when: VersionRange = ANY
    explicit_when: bool = False
    where_available: tuple[str, ...] = ()  # on only for the releases in each one's own `when`

    def variants_for(self, recipe, version: Version) -> set[str]:
        return set(self.variants) | {n for n in self.where_available if version in recipe.variants[n].when}


@dataclass(frozen=True)
class Resolved:
    """What the recipe says one build is: its variants and everything they decide."""
    version: str
    flavour: str
    variants: tuple[str, ...]      # on, in declaration order
    configure: tuple[str, ...]
    cflags: tuple[str, ...]
    vm_kind: str
    execute_cflags: tuple[str, ...]
    libraries: tuple[str, ...]
    patches: tuple                 # recipe.Patch, in series order
    post_link: tuple[str, ...] = ()  # wasm-opt options for the linked modules, in variant order
    merge: tuple[str, ...] = ()    # the variants' `merge` modules, in declaration order

    @property
    def regenerates_configure(self) -> bool:
        return any(p.regenerates_configure for p in self.patches)


def parse_variants(check, table: dict, vm_kinds: tuple[str, ...]) -> dict[str, Variant]:
    from . import library  # here: kiln.library imports kiln.recipe, which imports this module
    from .recipe import _expect, _range, _string_list
    result = {}
    for name, entry in table.items():
        at = _variant_needles(check, name)
        if not _NAME.match(name):
            check.fail(f"variant name {name!r} must be lowercase letters, digits, - or _", *at)
        _expect(check, entry, dict, f"variant {name}", *at)
        unknown = set(entry) - KEYS
        if unknown:
            check.fail(f"variant {name}: unknown key(s) {', '.join(sorted(unknown))} "
                       f"(allowed: {', '.join(sorted(KEYS))})", *at)
        lists = {key: _string_list(check, entry.get(key, []), f"variant {name} `{key}`", *at)
                 for key in ("configure", "libraries", "cflags", "execute_cflags", "requires",
                             "conflicts", "replaces", "post_link", "merge")}
        if not all(option.startswith("-") for option in lists["post_link"]):
            check.fail(f"variant {name}: `post_link` is a list of wasm-opt options, each starting "
                       f"with '-' (like [\"--strip-eh\", \"-O1\"])", *at)
        kind = entry.get("vm_kind")
        if kind is not None and kind not in vm_kinds:
            check.fail(f"variant {name}: vm_kind must be one of {', '.join(vm_kinds)}, not {kind!r}", *at)
        linked_names = {library.split_spec(spec)[0] for spec in lists["libraries"]}
        for arg in lists["configure"]:
            for linked in PREFIX.findall(arg):
                if linked not in linked_names:
                    check.fail(f"variant {name}: {arg!r} names the folder of library {linked!r}, which "
                               "the variant does not link: add it to its `libraries`", *at)
        for linked in lists["libraries"]:
            if not library.recipe_path(linked).is_file():
                check.fail(f"variant {name} links library {linked!r}, which has no recipe: add "
                           f"libraries/{library.split_spec(linked)[0]}/recipe.toml or take it out of "
                           "the variant's libraries", *at)
            try:
                library.get(linked)
            except KilnError as exc:   # a library variant it does not declare
                check.fail(f"variant {name} links {linked!r}: {str(exc).split(': ', 1)[1]}", *at)
        for wat in lists["merge"]:
            if not wat.endswith(".wat") or not (Path(check.path).parent / wat).is_file():
                check.fail(f"variant {name} merges {wat!r}, which is not a .wat file beside the recipe: "
                           "fix the path (relative to the recipe's folder)", *at)
        result[name] = Variant(
            name=name, line=check.line_of(*at),
            description=_expect(check, entry.get("description", ""), str, "description", *at),
            vm_kind=kind, when=_range(check, entry.get("when", "@:"), *at), **lists)
    for variant in result.values():
        for other in variant.requires + variant.conflicts:
            if other not in result:
                check.fail(f"variant {variant.name} names unknown variant {other!r} "
                           f"(known: {', '.join(result)})", *_variant_needles(check, variant.name))
    return result


def _variant_needles(check, name: str) -> tuple[str, ...]:
    """A variant is a [variants.<name>] table or a `<name> = {...}` line under [variants]."""
    header = f"[variants.{name}]"
    if any(line.strip() == header for line in check.lines):
        return (header,)
    return ("[variants]", f"{name} =")


def parse_flavours(check, table: dict, variants: dict[str, Variant]) -> dict[str, Flavour]:
    from .recipe import _expect, _range, _string_list
    result = {}
    for name, entry in table.items():
        header = f"[flavours.{name}]"
        if not _NAME.match(name):
            check.fail(f"flavour name {name!r} must be lowercase letters, digits, - or _", header)
        _expect(check, entry, dict, header, header)
        unknown = set(entry) - FLAVOUR_KEYS
        if unknown:
            hint = (" (a flavour is a set of variants: declare its arguments, libraries or flags "
                    "in a [variants.<name>] and list it in `variants`)"
                    if unknown & {"configure", "libraries", "cflags"} else "")
            check.fail(f"flavour {name}: unknown key(s) {', '.join(sorted(unknown))}{hint}", header)
        chosen = _string_list(check, entry.get("variants", []), "variants", header, "variants")
        optional = _string_list(check, entry.get("where_available", []), "where_available", header,
                                "where_available")
        for key, names in (("variants", chosen), ("where_available", optional)):
            for variant in names:
                if variant not in variants:
                    check.fail(f"flavour {name}: unknown variant {variant!r} (known: {', '.join(variants)}; "
                               "declare it under [variants] or take it out)", header, key)
        if len(set(chosen + optional)) != len(chosen + optional):
            check.fail(f"flavour {name} names a variant twice", header, "variants")
        result[name] = Flavour(
            name=name, line=check.line_of(header),
            description=_expect(check, entry.get("description", ""), str, "description", header),
            variants=chosen, when=_range(check, entry.get("when", "@:"), header),
            explicit_when="when" in entry, where_available=optional)
    if "default" not in result:
        check.fail("a [flavours.default] table is required", "[flavours")
    return result


def check_flavour_variants(recipe, check, flavour: Flavour) -> None:
    """Conflicts, requirements, and variants missing from a release the flavour's range names."""
    at = ("[flavours." + flavour.name + "]", "variants")
    on = set(flavour.variants) | set(flavour.where_available)
    for name in flavour.variants + flavour.where_available:
        variant = recipe.variants[name]
        for other in variant.conflicts:
            if other in on:
                check.fail(f"flavour {flavour.name}: variant {name} conflicts with {other} (recipe.toml:"
                           f"{variant.line}): take one of them out", *at)
        for other in variant.requires:
            if other not in on:
                check.fail(f"flavour {flavour.name}: variant {name} requires {other} (recipe.toml:"
                           f"{variant.line}): add {other} to its variants", *at)
    kinds = [n for n in flavour.variants + flavour.where_available if recipe.variants[n].vm_kind]
    if len(kinds) > 1:
        check.fail(f"flavour {flavour.name}: variants {' and '.join(kinds)} each name a VM kind: "
                   "keep one", *at)
    if flavour.explicit_when:
        for version in recipe.versions:
            v = Version.parse(version)
            for name in flavour.variants if v in flavour.when else ():
                variant = recipe.variants[name]
                if v not in variant.when:
                    check.fail(f"flavour {flavour.name}: variant {name} is unavailable for {version} "
                               f"(its when = \"{variant.when}\" at recipe.toml:{variant.line}): narrow the "
                               f"flavour's when = \"{flavour.when}\" or widen the variant's", *at)


def unavailable(recipe, flavour: Flavour, version: str) -> str | None:
    """Why the flavour has no build of `version` (its range, or a variant's), or None."""
    v = Version.parse(version)
    path = Path(recipe.path)
    where = path.relative_to(settings.ROOT) if path.is_relative_to(settings.ROOT) else path
    if v not in flavour.when:
        return f"the {flavour.name} flavour {flavour.when.describe()} (when = \"{flavour.when}\" in {where})"
    for name in flavour.variants:
        variant = recipe.variants[name]
        if v not in variant.when:
            return (f"the {flavour.name} flavour {variant.when.describe()} (when = \"{variant.when}\" "
                    f"of its variant {name} in {where})")
    return None


def resolve(recipe, version: str, flavour_name: str) -> Resolved:
    """The build (release, flavour) as the recipe describes it, checked for contradictions."""
    flavour = recipe.check_flavour(flavour_name)
    v = Version.parse(version)
    chosen = flavour.variants_for(recipe, v)
    on = tuple(name for name in recipe.variants if name in chosen)
    variants = [recipe.variants[name] for name in on]
    args = [a for when, group in recipe.configure if when.satisfied_by(v, on) for a in group]
    for variant in variants:
        for arg in variant.replaces:
            if arg not in args:
                raise KilnError(f"{recipe.path}:{variant.line}: variant {variant.name} replaces {arg!r}, "
                                f"which no [[configure]] entry gives {version}: take it out of `replaces`")
    # Taken out, not overridden: no argument's meaning depends on what comes after it.
    replaced = {a for variant in variants for a in variant.replaces}
    args = [a for a in args if a not in replaced]
    for variant in variants:
        args += variant.configure
    _check_arguments(recipe, version, flavour, args)
    kind = next((variant for variant in variants if variant.vm_kind), None)
    return Resolved(
        version=version, flavour=flavour_name, variants=on, configure=tuple(args),
        cflags=tuple(c for variant in variants for c in variant.cflags),
        vm_kind=kind.vm_kind if kind else recipe.vm_kind_default,
        execute_cflags=kind.execute_cflags if kind else (),
        libraries=tuple(dict.fromkeys(lib for variant in variants for lib in variant.libraries)),
        patches=tuple(p for p in recipe.patches if p.when.satisfied_by(v, on)),
        post_link=tuple(o for variant in variants for o in variant.post_link),
        merge=tuple(dict.fromkeys(m for variant in variants for m in variant.merge)),
    )


def _check_arguments(recipe, version: str, flavour: Flavour, args: list[str]) -> None:
    seen: dict[str, str] = {}
    for arg in args:
        match = _FEATURE.match(arg)
        key = match.group(1) if match else arg
        earlier = seen.get(key)
        if earlier is not None:
            what = "twice" if earlier == arg else f"after {earlier!r}"
            raise KilnError(f"{recipe.path}:{flavour.line}: {version} {flavour.name} would get {arg!r} {what}: "
                            "its meaning would depend on the order of arguments (give it once, or "
                            "declare the variant's `replaces`)")
        seen[key] = arg
