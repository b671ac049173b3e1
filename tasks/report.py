"""report: one view of every build (report.json, report.md, report.html in build-output/)."""
from kiln import report

from . import builds, php


def _write():
    for path in report.write(report.build_report(builds(), list(php().outputs)), report.output_folder()):
        print(f"  {path}")


def task_report():
    """Write build-output/report.{json,md,html}: stages, sizes, smoke, images, conformance."""
    return {
        "actions": [_write],
        # It reads whatever the builds left, which doit cannot list in advance: always rerun (cheap).
        "uptodate": [False],
        "verbosity": 2,
    }
