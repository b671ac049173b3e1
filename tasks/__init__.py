"""The task graph: one module per stage, each a doit task generator.

Every stage gathers the settings it reads into one dict and tracks it with
`config_changed`, so editing a setting reruns exactly the stages that read it.
"""
from __future__ import annotations

import functools

from doit.exceptions import TaskFailed

from kiln import recipe
from kiln.errors import KilnError
from kiln.layout import Build

LANGUAGE = "php"


def php():
    return recipe.language(LANGUAGE)


def builds() -> list[Build]:
    """Every build of the matrix: each release of the recipe in each flavour."""
    r = php()
    return [Build(LANGUAGE, version, flavour) for version in r.versions for flavour in r.flavours
            if flavour == "default"]


def versions() -> list[str]:
    return list(php().versions)


def user_errors(action):
    """Turn a KilnError into doit's TaskFailed: the one-line message, no traceback."""

    @functools.wraps(action)
    def wrapper(*args, **kwargs):
        try:
            result = action(*args, **kwargs)
        except KilnError as exc:
            return TaskFailed(f"kiln: {exc}")
        return result if result is not None else True

    return wrapper
