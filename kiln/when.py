"""`when` constraints, Spack-style: a release range and variants a build must (not) have.

    "@8.2:"            8.2.0 and later (kiln/versions.py: ranges match by prefix)
    "+opcache"         builds with the opcache variant on
    "~goto"            builds with the goto variant off
    "@8.2 +opcache"    both (spaces optional: "@8.2+opcache" is the same)

A build satisfies a constraint when its release is in the range and every named variant is
on (+) or off (~) as asked, like Spack's `spec.satisfies(when)`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .versions import ANY, Version, VersionRange

_TOKEN = re.compile(r"\s*(?:(@[^\s+~]*)|([+~])([a-z0-9][a-z0-9_-]*))")


@dataclass(frozen=True)
class When:
    versions: VersionRange = ANY
    on: frozenset[str] = frozenset()
    off: frozenset[str] = frozenset()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> "When":
        spec = str(text).strip()
        versions, on, off, at = ANY, set(), set(), 0
        while at < len(spec):
            token = _TOKEN.match(spec, at)
            if not token and spec[at:].strip()[:1].isdigit():
                raise ValueError(f"version range {text!r} must start with '@' (e.g. '@8.0:' or '@7.4:8.1')")
            if not token or token.end() == at:
                raise ValueError(f"`when` {text!r} is not understood at {spec[at:]!r} (expected a range "
                                 "like '@8.2:' and variants like '+opcache' or '~goto')")
            if token.group(1):
                if versions is not ANY:
                    raise ValueError(f"`when` {text!r} has two version ranges")
                versions = VersionRange.parse(token.group(1))
            else:
                name = token.group(3)
                if name in on | off:
                    raise ValueError(f"`when` {text!r} names variant {name!r} twice")
                (on if token.group(2) == "+" else off).add(name)
            at = token.end()
        return cls(versions, frozenset(on), frozenset(off), spec)

    @property
    def variants(self) -> frozenset[str]:
        return self.on | self.off

    def satisfied_by(self, version: str | Version, variants) -> bool:
        """Whether a build of `version` with exactly the variants `variants` on matches."""
        version = version if isinstance(version, Version) else Version.parse(version)
        chosen = set(variants)
        return version in self.versions and self.on <= chosen and not (self.off & chosen)

    def __str__(self) -> str:
        return self.text or "@:"


ALWAYS = When()
