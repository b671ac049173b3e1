"""Native PHP against the wasm build, measured side by side in one run (bench.json).

- the smoke docroot's demo page run natively, as a module (only the docroot granted) and,
  when a cli image layout exists, through that image (kiln/shimrun.py);
- Zend/bench.php and Zend/micro_bench.php: native PHP (`php -n`) and the precompiled module
  alternate, median of N each; a cold start (the .wasm compiled in process, then run) once;
- start-up time (`-r 'echo 1;'`): native, the precompiled module in process (instantiate + run)
  and the whole `python -m kiln.runner` command;
- peak memory: the max RSS of the native process and of the runner process (GNU time);
- sizes: module, precompiled artifact and image.

Every time is wall clock on this machine; the ratios (wasm / native) are what to compare.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import atomic, native, runner, settings
from .errors import KilnError
from .layout import Build

BENCHES = ("Zend/bench.php", "Zend/micro_bench.php")
STARTUP_ARGS = ["-r", "echo 1;"]
DEMO_DOCROOT = settings.ROOT / "languages" / "php" / "smoke" / "docroot"
BENCH_TIMEOUT = 600.0


def _spawn(command: list[str], cwd: Path | None = None) -> tuple[float, int, int, bytes]:
    """Run a host command: (seconds, exit code, max RSS in bytes or 0, stdout).

    The max RSS comes from /usr/bin/time when it is installed: the kernel keeps a process's
    high-water mark across exec, so wait4() on a child forked from this (large) Python process
    would report our own size, not the child's."""
    timer = Path("/usr/bin/time").is_file()
    with tempfile.NamedTemporaryFile("r", prefix="kiln-rss-") as rss:
        full = ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *command] if timer else command
        started = time.monotonic()
        proc = subprocess.run(full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        seconds = time.monotonic() - started
        text = rss.read().strip().splitlines()
    kilobytes = int(text[-1]) if text and text[-1].isdigit() else 0
    return seconds, proc.returncode, kilobytes * 1024, proc.stdout


def _native(php: str, args: list[str], cwd: Path | None = None) -> float:
    seconds, code, _, _ = _spawn([php, "-n", *args], cwd)
    if code != 0:
        raise KilnError(f"native {php} {' '.join(args)} exited {code}")
    return seconds


def _module(module, args: list[str], preopens=(), what: str = "") -> float:
    result = runner.run(module, ["php", *args], preopens=list(preopens), timeout=runner.limit(BENCH_TIMEOUT))
    if result.exit_code != 0:
        raise KilnError(f"{what or module} {' '.join(args)} exited {result.exit_code}: "
                        f"{result.stderr.decode(errors='replace')[-300:]}")
    return result.duration


def _summary(native: list[float], wasm: list[float]) -> dict:
    n, w = statistics.median(native), statistics.median(wasm)
    return {"native": round(n, 4), "module": round(w, 4), "ratio": round(w / n, 2),
            "native_runs": [round(x, 4) for x in native], "module_runs": [round(x, 4) for x in wasm]}


def page(php: str, aot: Path, build: Build) -> dict:
    """The demo page three ways: native, module (docroot granted), image (if one exists)."""
    docroot = DEMO_DOCROOT
    grant = [runner.Preopen(docroot, "/docroot", False)]
    seconds, code, _, out = _spawn([php, "-n", str(docroot / "index.php")])
    entry = {"native": {"seconds": round(seconds, 4), "exit": code, "bytes": len(out)}}
    result = runner.run(aot, ["php", "/docroot/index.php"], preopens=grant, timeout=runner.limit(60))
    entry["module"] = {"seconds": round(result.duration, 4), "exit": result.exit_code,
                       "bytes": len(result.stdout),
                       "wasi": b"wasi" in result.stdout.lower()}
    entry["image"] = _page_through_image(build, docroot)
    return entry


def _page_through_image(build: Build, docroot: Path) -> dict | None:
    from . import images, shimrun

    for kind in ("cli-aot", "cli"):
        layout = images.layout_path(build, kind)
        if not (layout / "index.json").is_file():
            continue
        try:
            image = shimrun.load_image(str(layout))
            started = time.monotonic()
            result = shimrun.run_image(image, ["/docroot/index.php"],
                                       volumes=[shimrun.Volume(docroot, "/docroot", False)],
                                       inherit_stdio=False, timeout=runner.limit(60))
            return {"kind": kind, "seconds": round(time.monotonic() - started, 4),
                    "exit": result.exit_code, "bytes": len(result.stdout)}
        except KilnError as exc:
            return {"kind": kind, "error": str(exc)}
    return None


def benches(php: str, aot: Path, wasm: Path, src: Path, rounds: int, cold: bool, log=print) -> dict:
    zend = src / "Zend"
    grant = [runner.Preopen(zend, "/zend", False)]
    found = {}
    for bench in BENCHES:
        script = src / bench
        if not script.is_file():
            continue
        guest = "/zend/" + script.name
        native, module = [], []
        for _ in range(rounds):  # alternate, so load on the machine hits both alike
            native.append(_native(php, [str(script)]))
            module.append(_module(aot, [guest], grant, "precompiled module"))
        entry = _summary(native, module)
        if cold:
            import wasmtime
            started = time.monotonic()
            compiled = wasmtime.Module.from_file(runner.make_engine(), str(wasm))
            compile_seconds = time.monotonic() - started
            run_seconds = _module(compiled, [guest], grant, "module compiled in process")
            entry["cold"] = round(compile_seconds + run_seconds, 4)
            entry["cold_compile"] = round(compile_seconds, 4)
            entry["cold_ratio"] = round(entry["cold"] / entry["native"], 2)
            cold = False  # compiling the same module once tells it all
        log(f"  {bench:<22} native {entry['native']:7.3f}s  module {entry['module']:7.3f}s  "
            f"x{entry['ratio']}" + (f"  cold {entry['cold']:.2f}s" if "cold" in entry else ""))
        found[Path(bench).name] = entry
    return found


def startup(php: str, aot: Path, rounds: int) -> dict:
    runner.load_module(aot)  # in process: the artifact is loaded once, as a server would
    native, module, command = [], [], []
    env_cli = [sys.executable, "-m", "kiln.runner", str(aot), *STARTUP_ARGS]
    for _ in range(max(rounds, 5)):
        native.append(_native(php, STARTUP_ARGS))
        module.append(_module(aot, STARTUP_ARGS))
        seconds, code, _, _ = _spawn(env_cli, cwd=settings.ROOT)
        if code != 0:
            raise KilnError(f"{' '.join(env_cli)} exited {code}")
        command.append(seconds)
    entry = _summary(native, module)
    entry["command"] = round(statistics.median(command), 4)
    entry["command_ratio"] = round(entry["command"] / entry["native"], 2)
    return entry


def memory(php: str, aot: Path, src: Path) -> dict:
    """Max RSS running bench.php: the native process against the whole runner process
    (Python + Wasmtime + the guest; `runner_baseline` is Python + Wasmtime alone)."""
    script = src / "Zend" / "bench.php"
    _, _, native, _ = _spawn([php, "-n", str(script)])
    cli = [sys.executable, "-m", "kiln.runner", "-v", f"{script.parent}:/zend:ro",
           str(aot), "/zend/bench.php"]
    _, code, module, _ = _spawn(cli, cwd=settings.ROOT)
    # The runner process alone (Python + Wasmtime, nothing loaded) for scale.
    _, _, baseline, _ = _spawn([sys.executable, "-c", "import wasmtime, kiln.runner"], cwd=settings.ROOT)
    return {"native": native, "module": module, "runner_baseline": baseline,
            "ratio": round(module / native, 2) if native else None,
            "how": "max RSS (GNU time) while running Zend/bench.php"}


def sizes(build: Build, modules: dict[str, dict[str, Path]]) -> dict:
    from . import images

    found = {}
    for name, paths in modules.items():
        for kind, path in paths.items():
            if path.is_file():
                found[f"{name}.{'cwasm' if kind == 'aot' else 'wasm'}"] = path.stat().st_size
    for kind in images.kinds_for(build):
        layout = images.layout_path(build, kind)
        blobs = layout / "blobs"
        if blobs.is_dir():
            found[f"image {kind}"] = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())
    return found


def measure(build: Build, modules: dict[str, dict[str, Path]], rounds: int = 3, cold: bool = True,
            out: Path | None = None, log=print) -> dict:
    """Everything above for one build; written to build.root/bench.json (or `out`)."""
    php = native.binary("cli")
    aot, wasm = modules["php"]["aot"], modules["php"]["wasm"]
    for path in (aot, wasm):
        if not path.is_file():
            raise KilnError(f"{path} is missing: build {build.id} first")
    native_version = native.version(php)
    log(f"  native PHP {native_version} ({php}) against {aot.name}, median of {rounds}")
    result = {
        "version": build.version,
        "flavour": build.flavour,
        "native": {"php": php, "version": native_version},
        "engine": runner.engine_fingerprint(),
        "rounds": rounds,
        "page": page(php, aot, build),
        "bench": benches(php, aot, wasm, build.src, rounds, cold, log),
        "startup": startup(php, aot, rounds),
        "memory": memory(php, aot, build.src),
        "sizes": sizes(build, modules),
        "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    finish(result)
    atomic.write_json(out or build.root / "bench.json", result)
    return result


def finish(result: dict) -> dict:
    """Derived figures: bench times net of the module's in-process start-up (instantiation and
    `-r 'echo 1;'`), the ratio list and the plot."""
    startup_module = result.get("startup", {}).get("module")
    startup_native = result.get("startup", {}).get("native")
    if startup_module is not None:
        for entry in result.get("bench", {}).values():
            net_module = entry["module"] - startup_module
            net_native = max(entry["native"] - startup_native, 1e-6)
            entry["module_net"] = round(net_module, 4)
            entry["ratio_net"] = round(net_module / net_native, 2)
    result["ratios"] = [[label, ratio] for label, ratio in ratios(result)]
    result["plot_svg"] = plot_svg(result)
    return result


def ratios(result: dict) -> list[tuple[str, float]]:
    """(label, wasm / native) pairs, the figures the table and the plot show."""
    rows = []
    for name, entry in result.get("bench", {}).items():
        rows.append((f"{name} (precompiled)", entry["ratio"]))
        if "ratio_net" in entry:
            rows.append((f"{name} (precompiled, net of start-up)", entry["ratio_net"]))
        if "cold_ratio" in entry:
            rows.append((f"{name} (cold: compile + run)", entry["cold_ratio"]))
    if "startup" in result:
        rows.append(("start-up, in process", result["startup"]["ratio"]))
        rows.append(("start-up, runner command", result["startup"]["command_ratio"]))
    if result.get("memory", {}).get("ratio"):
        rows.append(("peak memory (max RSS)", result["memory"]["ratio"]))
    return rows


def plot_svg(result: dict, width: int = 660) -> str:
    """A horizontal bar plot of the ratios, log-free and self-contained (inline in HTML)."""
    rows = ratios(result)
    if not rows:
        return ""
    bar_h, gap, label_w, top = 18, 8, 300, 24
    longest = max(r for _, r in rows)
    scale = (width - label_w - 60) / max(longest, 1.0)
    height = top + len(rows) * (bar_h + gap) + 10
    one = label_w + scale  # where x1 (native) is
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12" role="img" '
             f'aria-label="wasm / native ratios for PHP {result.get("version", "")}">',
             f'<text x="{label_w}" y="14" fill="#555">wasm / native (dashed line: native = 1; shorter is better)</text>']
    for i, (label, ratio) in enumerate(rows):
        y = top + i * (bar_h + gap)
        colour = "#4a7" if ratio <= 1.8 else "#d84" if ratio <= 4 else "#c44"
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{ratio * scale:.1f}" height="{bar_h}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + ratio * scale + 4:.1f}" y="{y + 13}">{ratio:.2f}x</text>')
    parts.append(f'<line x1="{one:.1f}" y1="{top - 4}" x2="{one:.1f}" y2="{height - 6}" '
                 f'stroke="#333" stroke-dasharray="3,3"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def markdown_table(result: dict) -> str:
    lines = ["| measure | native | wasm | wasm / native |", "|---|---:|---:|---:|"]
    for name, entry in result.get("bench", {}).items():
        lines.append(f"| {name}, precompiled module | {entry['native']:.3f} s | {entry['module']:.3f} s | {entry['ratio']:.2f} |")
        if "ratio_net" in entry:
            lines.append(f"| {name}, precompiled, net of start-up | | {entry['module_net']:.3f} s | {entry['ratio_net']:.2f} |")
        if "cold" in entry:
            lines.append(f"| {name}, cold (compile {entry['cold_compile']:.1f} s + run) | {entry['native']:.3f} s | "
                         f"{entry['cold']:.2f} s | {entry['cold_ratio']:.2f} |")
    s = result.get("startup")
    if s:
        lines.append(f"| start-up `-r 'echo 1;'`, in process | {s['native'] * 1000:.1f} ms | {s['module'] * 1000:.1f} ms | {s['ratio']:.2f} |")
        lines.append(f"| start-up, `python -m kiln.runner` command | {s['native'] * 1000:.1f} ms | {s['command'] * 1000:.1f} ms | {s['command_ratio']:.2f} |")
    m = result.get("memory")
    if m and m.get("ratio"):
        lines.append(f"| peak memory, bench.php (max RSS; runner alone {m['runner_baseline'] / 1e6:.0f} MB) | "
                     f"{m['native'] / 1e6:.1f} MB | {m['module'] / 1e6:.1f} MB | {m['ratio']:.2f} |")
    p = result.get("page")
    if p:
        img = p.get("image")
        img_txt = "no image layout" if img is None else img.get("error") or f"{img['seconds'] * 1000:.0f} ms ({img['kind']})"
        lines.append(f"| demo page (native / module / image) | {p['native']['seconds'] * 1000:.0f} ms | "
                     f"{p['module']['seconds'] * 1000:.0f} ms / {img_txt} | |")
    if result.get("sizes"):
        lines.append("")
        lines.append("| artifact | size |")
        lines.append("|---|---:|")
        for name, size in result["sizes"].items():
            lines.append(f"| {name} | {size / 1e6:.2f} MB |")
    return "\n".join(lines) + "\n"
