"""Gather what every build left behind into one report (JSON, Markdown, HTML)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import atomic, settings, templating
from .layout import Build

STAGES = ["download", "extract", "patch", "configure", "make", "collect", "precompile", "smoke",
          "image", "conformance"]
# The seed demo's traditional images, for scale (seed-demo.md).
REFERENCE_IMAGES = [("php:7.4.32-cli (Debian)", 166.0), ("php:7.4.32-cli-alpine", 30.1),
                    ("demo php-wasm:7.4.32-cli-aot", 5.35)]


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _smoke_summary(report: Path, failed: Path) -> dict | None:
    smoke = _read(report) or _read(failed)
    if smoke is None:
        return None
    edge = smoke.get("runtimes", {}).get("wasmedge", {})
    return {
        "passed": smoke["passed"],
        "checks": {c["name"]: c["passed"] for c in smoke["checks"]},
        # Per check: "passed", "failed" or "not run" under WasmEdge, and which one (or why none).
        "wasmedge": {c["name"]: c.get("runtimes", {}).get("wasmedge", "not run") for c in smoke["checks"]},
        "wasmedge_runtime": (f"WasmEdge {edge['version']}" if "version" in edge
                             else f"not run: {edge.get('not_run', 'this smoke record predates it')}"),
    }


def collect_build(build: Build, modules: list[str]) -> dict:
    stages = {}
    for record in sorted(build.state.glob("stage-*.json")) if build.state.is_dir() else []:
        data = _read(record)
        if data:
            stages[data["stage"]] = {"outcome": data["outcome"], "seconds": data["seconds"]}
    entry = {
        "build": build.id,
        "version": build.version,
        "flavour": build.flavour,
        "stages": stages,
        "sizes": {name: {"wasm": _size(build.module(name)), "cwasm": _size(build.module(name, aot=True))}
                  for name in modules},
        "smoke": _smoke_summary(build.smoke_report, build.root / "smoke.failed.json"),
    }
    spec = _read(build.state / "spec.json")  # what configure built it from (kiln/spec.py)
    if spec is not None:
        entry["spec"] = spec
    for extra in ("images", "conformance", "bench"):
        data = _read(build.root / f"{extra}.json")
        if data is not None:
            entry[extra] = data
    optimized = _read(build.root / "optimized.json")  # the optional wasm-opt variant (tasks/optimize.py)
    if optimized is not None:
        optimized["smoke"] = _smoke_summary(build.root / "smoke-optimized.json",
                                            build.root / "smoke-optimized.failed.json")
        entry["optimized"] = optimized
    return entry


def build_report(builds: list[Build], modules: list[str]) -> dict:
    entries = [collect_build(b, modules) for b in builds]
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "builds": [e for e in entries if e["stages"] or e["smoke"]],
        "not_built": [e["build"] for e in entries if not e["stages"] and not e["smoke"]],
        "reference_images_mb": REFERENCE_IMAGES,
    }


def _mb(value) -> str:
    return "" if value is None else f"{value / 1e6:.2f}"


def write(report: dict, out: Path) -> list[Path]:
    context = {"report": report, "stages": STAGES, "mb": _mb}
    targets = [out / "report.json", out / "report.md", out / "report.html"]
    atomic.write_json(targets[0], report)
    atomic.write_text(targets[1], templating.render("report.md.j2", **context))
    atomic.write_text(targets[2], templating.render("report.html.j2", **context))
    return targets


def output_folder() -> Path:
    return settings.build_output()


def merge(reports: list[dict]) -> dict:
    """One report from several machines' (the CI cells'): later cells win per build."""
    merged: dict[str, dict] = {}
    not_built: set[str] = set()
    for part in reports:
        for entry in part.get("builds", []):
            merged[entry["build"]] = entry
        not_built.update(part.get("not_built", []))
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "builds": sorted(merged.values(), key=lambda e: [int(p) for p in e["version"].split(".")]),
        "not_built": sorted(not_built - set(merged)),
        "reference_images_mb": REFERENCE_IMAGES,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "merge":
        print("usage: python -m kiln.report merge OUT_DIR REPORT.json...", file=sys.stderr)
        return 2
    parts = [json.loads(Path(p).read_text()) for p in argv[2:]]
    for path in write(merge(parts), Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
