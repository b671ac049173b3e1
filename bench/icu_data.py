#!/usr/bin/env python3
"""ICU's data linked into the module or loaded from a file (issue 32): what each costs a run.

    .venv/bin/python bench/icu_data.py [--rounds 7] [--no-docs]

Needs `doit lib_build:icu` (and `doit php:8.2.32-full` for the PHP rows). One small C program,
tests/fixtures/libraries/use-icu.c (numbers and a currency in two locales, collation in fr and
sv, NFD, the Any-Latin transliterator, a character name, IDNA), is linked twice through ICU's
pkg-config files: once with libicudata.a (the data in the module's data section, as the full
flavour ships), once with bench/icu_stub_data.c instead (no data linked: ICU reads
$ICU_DATA/icudt76l.dat, granted read-only). The file option runs with the recipe's cut package
and with ICU's whole one. Each program runs on the Wasmtime command line as `kiln run` does
(precompiled artifact, exit shim), rounds interleaved; the table has median wall time and peak
resident memory (GNU time's, of the process alone) per run. The PHP rows run the full flavour's
php.wasm the same way, once printing "1" and once formatting a number in de_DE, beside native
PHP with its intl (Debian's, ICU 72) and the wordpress flavour (the same extensions but intl,
GOTO VM). Replaces the "ICU's data: linked in or from a file" section of
docs/benchmarks.md unless --no-docs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from kiln import library, native, toolchain, wasmtime_cli  # noqa: E402
from kiln.cliargs import parse_grant  # noqa: E402
from kiln.layout import Build  # noqa: E402
from tests.test_icu import EXPECTED, PROGRAM  # noqa: E402

STUB = ROOT / "bench" / "icu_stub_data.c"
ECHO = 'echo 1, "\\n";'
PHP_FORMAT = 'echo (new NumberFormatter("de_DE", NumberFormatter::DECIMAL))->format(1234567.891), "\\n";'


def fail(message: str) -> None:
    sys.exit(f"bench/icu_data.py: {message}")


def cut_package(icu: library.Library) -> Path:
    """The data package the ICU build cut to its recipe's languages (lib-build.sh.j2's data step
    leaves it in the work folder; the installed tree has it only inside libicudata.a)."""
    return icu.work / "kiln-data" / f"icudt{icu.version.split('.')[0]}l.dat"


def link_program(icu: library.Library, out: Path, data: str) -> Path:
    """use-icu.c linked with ICU's data (`data` "linked") or with the empty stub ("file")."""
    env = {**os.environ, "PKG_CONFIG_LIBDIR": str(icu.pkgconfig_dir), "PKG_CONFIG_PATH": ""}
    flags = subprocess.run(["pkg-config", "--static", "--cflags", "--libs", "icu-i18n", "icu-uc"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    sources = [str(PROGRAM)]
    if data == "file":
        flags = [f for f in flags if f != "-licudata"]
        major = icu.version.split(".")[0]
        sources += [f"-DKILN_ICU_ENTRY=icudt{major}_dat", str(STUB)]
    tools = toolchain.current()
    built = subprocess.run([*tools.cc, *tools.cflags, *tools.cppflags, *sources, *flags,
                            *tools.ldflags, *tools.libs, "-o", str(out)],
                           env={**os.environ, **tools.env}, capture_output=True, text=True)
    if built.returncode != 0:
        fail(f"linking {out.name} failed: {built.stderr.strip().splitlines()[-1:]}")
    return out


def run_once(command: list[str], expect: list[str]) -> tuple[float, float]:
    """One run: wall seconds and peak resident MiB. GNU time (scripts/setup installs it) forks
    the command from its own small process: a child forked from this Python would count
    Python's pages in its high-water mark."""
    with tempfile.NamedTemporaryFile(prefix="kiln-bench-time-") as report:
        started = time.perf_counter()
        child = subprocess.run(["time", "-q", "-f", "%M", "-o", report.name, *command],
                               capture_output=True, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        lines = child.stdout.decode(errors="replace").splitlines()
        if child.returncode != 0 or lines != expect:
            fail(f"{' '.join(command[-3:])}: status {child.returncode}, printed {lines[:3]!r}, "
                 f"stderr {child.stderr.decode(errors='replace')[-300:]!r}")
        peak_kib = int(Path(report.name).read_text().split()[-1])
    return wall, peak_kib / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-docs", action="store_true")
    ns = ap.parse_args()

    icu = library.get("icu")
    cut_data = cut_package(icu)
    whole_data = icu.work / "source" / "data" / "in" / cut_data.name
    if not (icu.prefix / "lib" / "libicudata.a").is_file() or not cut_data.is_file():
        fail(f"ICU is not built in {icu.prefix} (its data package {cut_data} too): run doit lib_build:icu")
    if not wasmtime_cli.available():
        fail("the Wasmtime command line is missing: run scripts/setup")
    php = Build("php", "8.2.32", "full").module("php")
    wordpress = Build("php", "8.2.32", "wordpress").module("php")   # the same extensions but intl

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-icu-") as folder:
        folder = Path(folder)
        cut, whole = folder / "cut", folder / "whole"
        for place, package in ((cut, cut_data), (whole, whole_data)):
            place.mkdir()   # a folder per package: ICU_DATA names a folder, the file name is ICU's
            (place / package.name).write_bytes(package.read_bytes())
        modules = {data: link_program(icu, folder / f"use-icu-{data}.wasm", data) for data in ("linked", "file")}

        def wasm(module: Path, argv: list[str], data_folder: Path | None = None) -> list[str]:
            grants = [parse_grant(f"{data_folder}:/icu:ro")] if data_folder else []
            env = {"ICU_DATA": "/icu"} if data_folder else {}
            return wasmtime_cli.command(wasmtime_cli.artifact(module), argv, env, grants)

        def size(path: Path) -> str:
            return f"{path.stat().st_size / 1e6:.2f} MB"

        rows = {  # name: (command, expected output, module size, data file size)
            "use-icu.c, data linked in (28 languages)":
                (wasm(modules["linked"], ["use-icu"]), EXPECTED, size(modules["linked"]), "-"),
            "use-icu.c, data from a file (28 languages)":
                (wasm(modules["file"], ["use-icu"], cut), EXPECTED, size(modules["file"]), size(cut_data)),
            "use-icu.c, data from a file (every locale)":
                (wasm(modules["file"], ["use-icu"], whole), EXPECTED, size(modules["file"]), size(whole_data)),
        }
        if wordpress.is_file():
            rows["php.wasm 8.2.32-wordpress (no intl): echo 1"] = (
                wasm(wordpress, ["php", "-n", "-r", ECHO]), ["1"], size(wordpress), "-")
        if php.is_file():
            for what, code, expect in (("echo 1", ECHO, ["1"]),
                                       ("NumberFormatter de_DE", PHP_FORMAT, ["1.234.567,891"])):
                rows[f"php.wasm 8.2.32-full (data linked in): {what}"] = (
                    wasm(php, ["php", "-n", "-r", code]), expect, size(php), "-")
                rows[f"native PHP {native.release()} + intl: {what}"] = (
                    [native.binary("cli"), "-n", "-d", "extension=intl", "-r", code], expect, "-", "-")
        else:
            print(f"bench/icu_data.py: {php} missing (doit php:8.2.32-full): PHP rows left out", file=sys.stderr)

        for command, expect, _, _ in rows.values():
            run_once(command, expect)   # warm: page cache, Wasmtime's artifacts
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
        for round_ in range(ns.rounds):
            print(f"round {round_ + 1}/{ns.rounds}", file=sys.stderr)
            for name, (command, expect, _, _) in rows.items():
                samples[name].append(run_once(command, expect))
    load_after = os.getloadavg()

    median = {name: (statistics.median(s[0] for s in runs) * 1000, statistics.median(s[1] for s in runs))
              for name, runs in samples.items()}

    def against(name: str) -> str | None:
        """The row a row is compared with: the data linked in for the C program, native PHP
        doing the same for php.wasm."""
        if name.startswith("use-icu.c"):
            return next(iter(rows))
        what = name.rpartition(": ")[2]
        return next((n for n in rows if n.startswith("native PHP") and n.endswith(what)), None)

    lines = ["| run | module (.wasm) | data file | wall time (median) | peak resident memory (median) "
             "| wall, memory x the row compared |", "|---|---:|---:|---:|---:|---:|"]
    for name, (_, _, module, data) in rows.items():
        wall, rss = median[name]
        base = against(name)
        ratio = (f"{wall / median[base][0]:.2f}x, {rss / median[base][1]:.2f}x (vs {base.partition(':')[0]})"
                 if base and base != name else "")
        lines.append(f"| {name} | {module} | {data} | {wall:.1f} ms | {rss:.1f} MiB | {ratio} |")
    from graph import cpu_model, write_section
    body = (f"`bench/icu_data.py --rounds {ns.rounds}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} x {cpu_model()}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
            f"ICU {icu.version}, each run a new process on the Wasmtime command line "
            f"{wasmtime_cli.version()} (precompiled, as `kiln run`).\n\n" + "\n".join(lines) + "\n")
    print(body)
    if not ns.no_docs:
        write_section("ICU's data: linked in or from a file", body + "\n" + DOC_NOTE)
    return 0


DOC_NOTE = """Linked in, the data is part of the module's data section, and Wasmtime maps a
precompiled module's memory image copy-on-write: a process pays for the pages of the items it
opens, not for the package. From a file, ICU (built with `U_HAVE_MMAP=0`: WASI has no `mmap`)
reads the whole package into its heap the first time any item is needed, so every process
(every pool worker, for as long as it lives) pays for reading and keeping all of it, more with
every locale in it. The PHP rows show what the linked-in data costs a PHP process that does not
use intl (`echo 1`, beside the wordpress flavour, which has every extension of the full one but
intl) and one that formats a number. Hence the full flavour links it in (docs/images.md,
"intl"); a data file would only pay off where the module's size on the wire matters more than
each process's start-up and memory, the browser, which does not run the full flavour.
"""


if __name__ == "__main__":
    sys.exit(main())
