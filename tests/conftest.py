import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def php_builds():
    """Both testable releases, end to end (images too when an engine is up), built once per run."""
    from doit_run import doit
    from kiln import recipe
    from kiln.layout import Build

    php = recipe.language("php")
    doit(*[f"php:{v}" for v in php.testable])
    return {v: Build("php", v, "default") for v in php.testable}
