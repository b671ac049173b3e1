"""Release versions and Spack-style version ranges.

A range is written `@LOW:HIGH` (either side may be empty) or `@V` for one
series. Bounds are inclusive and match by prefix, as Spack's do: `@7.4:8.0`
covers every 7.4.x and 8.0.x release, `@8:` everything from 8.0.0 on,
`@:7.4` everything up to the last 7.4.x, `@8.2` every 8.2.x.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(r"^\d+(\.\d+)*$")


@total_ordering
@dataclass(frozen=True)
class Version:
    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> "Version":
        text = str(text).strip()
        if not _VERSION.match(text):
            raise ValueError(f"not a version: {text!r} (expected digits and dots, e.g. 8.2.32)")
        return cls(tuple(int(p) for p in text.split(".")))

    def startswith(self, prefix: "Version") -> bool:
        return self.parts[: len(prefix.parts)] == prefix.parts

    def __lt__(self, other: "Version") -> bool:
        return self.parts < other.parts

    def __str__(self) -> str:
        return ".".join(str(p) for p in self.parts)


@dataclass(frozen=True)
class VersionRange:
    low: Version | None
    high: Version | None
    text: str

    @classmethod
    def parse(cls, text: str) -> "VersionRange":
        spec = str(text).strip()
        if not spec.startswith("@"):
            raise ValueError(f"version range {text!r} must start with '@' (e.g. '@8.0:' or '@7.4:8.1')")
        body = spec[1:]
        if ":" not in body:
            one = Version.parse(body)
            return cls(one, one, spec)
        low, _, high = body.partition(":")
        if ":" in high:
            raise ValueError(f"version range {text!r} has more than one ':'")
        lo = Version.parse(low) if low else None
        hi = Version.parse(high) if high else None
        if lo and hi and hi < lo and not hi.startswith(lo) and not lo.startswith(hi):
            raise ValueError(f"version range {text!r} is empty: its upper bound is below its lower bound")
        return cls(lo, hi, spec)

    def __contains__(self, version: Version) -> bool:
        if self.low is not None and version < self.low and not version.startswith(self.low):
            return False
        if self.high is not None and version > self.high and not version.startswith(self.high):
            return False
        return True

    def __str__(self) -> str:
        return self.text

    def describe(self) -> str:
        """In words, for messages: "starts at 8.0", "ends with 7.4", "covers 8.1 to 8.3"."""
        if self.low is not None and self.low == self.high:
            return f"is for {self.low} only"
        if self.low is not None and self.high is not None:
            return f"covers {self.low} to {self.high}"
        if self.low is not None:
            return f"starts at {self.low}"
        if self.high is not None:
            return f"ends with {self.high}"
        return "covers every release"


ANY = VersionRange(None, None, "@:")
