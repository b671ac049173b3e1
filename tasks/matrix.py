"""matrix: the build matrix as JSON (versions x flavours x outputs), for CI job generation."""
import json

from kiln import atomic, settings

from . import builds, php


def matrix() -> dict:
    recipe = php()
    cells = [{
        "build": b.id,
        "version": b.version,
        "flavour": b.flavour,
        "outputs": list(recipe.outputs),
        "testable": b.version in recipe.testable,
    } for b in builds()]
    return {"include": cells}


def _write():
    data = matrix()
    atomic.write_json(settings.build_output() / "matrix.json", data)
    print(json.dumps(data, separators=(",", ":")))


def task_matrix():
    """Print the build matrix as JSON (also written to build-output/matrix.json)."""
    return {"actions": [_write], "uptodate": [False], "verbosity": 2}
