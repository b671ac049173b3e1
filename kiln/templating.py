"""Jinja rendering for Dockerfiles and build scripts (shell lives in templates/)."""
from __future__ import annotations

import functools
import shlex

import jinja2

from . import settings


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(settings.TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["qjoin"] = lambda words: shlex.join(str(w) for w in words)
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def template_path(template: str):
    return settings.TEMPLATES / template
