"""Bad input at every command line: `kiln`, `kiln run`, `kiln serve` (= python -m kiln.server),
`kiln image run` and doit.

Each case is what a user might type; each must end with a non-zero status (2: usage or
input error), exactly one line on stderr that names the thing and the fix, and no traceback.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from kiln import oci, runner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tool, tmp_path_factory) -> dict[str, Path]:
    """What the cases name: a module, an artifact, a text file, folders, an image layout."""
    base = tmp_path_factory.mktemp("cli-errors")
    (base / "notes.txt").write_text("hello\n")
    (base / "folder").mkdir()
    # An artifact whose sidecar says it was compiled with other engine settings.
    artifact = runner.precompile(tool, base / "tool.cwasm")
    meta = runner.read_artifact_metadata(artifact)
    meta["settings"]["cranelift_opt_level"] = "none"
    meta["fingerprint"] = "0" * 16
    runner.sidecar_path(artifact).write_text(json.dumps(meta))
    entries = [oci.Entry("tool.wasm", tarfile.REGTYPE, 0o755, tool.read_bytes()),
               oci.Entry("notes.wasm", tarfile.REGTYPE, 0o644, b"not a module\n")]
    image = oci.Image(config={"Entrypoint": ["/tool.wasm"], "Cmd": ["exit", "3"]},
                      layers=[oci.write_layer(entries, 0)])
    oci.write_layout(base / "layout", {"tool": oci.assemble(image, 0)})
    return {"tool": tool, "artifact": artifact, "notes": base / "notes.txt",
            "folder": base / "folder", "layout": base / "layout", "base": base}


def kiln(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`kiln ARGS` as `python -m kiln`, from a folder outside the checkout (the project need
    not be installed in the test's interpreter, hence PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "kiln", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": "unix:///nonexistent",
                               **(env or {})})


def assert_one_line_error(proc, status: int, expected: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == status, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0], lines[0]


# (case id, command line with {placeholders} from `files`, environment, expected status, words)
CASES = [
    ("no command", [], None, 2, "usage: kiln"),
    ("unknown command", ["build"], None, 2, "unknown command 'build': the commands are run, serve, image run"),
    ("image without run", ["image", "ls"], None, 2, "kiln image run IMAGE"),
    ("run: nonexistent grant", ["run", "-v", "/nonexistent:/app", "{tool}"], None, 2,
     "kiln run: argument -v/--volume: /nonexistent: no such folder"),
    ("run: a file as grant", ["run", "-v", "{notes}:/app", "{tool}"], None, 2,
     "is a file, and only folders can be granted: grant its folder, -v {base}:GUEST"),
    ("run: grant without a guest", ["run", "-v", "{folder}", "{tool}"], None, 2,
     "expected HOST:GUEST[:ro]"),
    ("run: old --dir to nowhere", ["run", "--dir", "/nonexistent::/app", "{tool}"], None, 2,
     "/nonexistent: no such folder"),
    ("run: a folder as module", ["run", "{folder}"], None, 2, "is a folder, not a module"),
    ("run: a text file as module", ["run", "{notes}"], None, 2, "notes.txt is not a wasm module"),
    ("run: no such module", ["run", "{base}/none.wasm"], None, 2, "none.wasm: cannot load module"),
    ("run: artifact for other settings", ["run", "{artifact}", "exit", "0"], None, 2,
     "precompiled with other engine settings (cranelift_opt_level='none'; this engine: cranelift_opt_level='speed')"),
    ("run: zero timeout", ["run", "--timeout", "0", "{tool}"], None, 2,
     "argument --timeout: 0 must be a number of seconds above 0"),
    ("run: negative timeout", ["run", "--timeout", "-1", "{tool}"], None, 2, "above 0"),
    ("run: negative memory", ["run", "--memory", "-1", "{tool}"], None, 2, "argument --memory: -1 must be above 0"),
    ("run: bad env", ["run", "-e", "NOEQUALS", "{tool}"], None, 2, "expected NAME=VALUE"),
    ("run: bad setting", ["run", "{tool}"], {"KILN_TIME_LIMITS": "maybe"}, 2,
     "KILN_TIME_LIMITS='maybe' is not one of on, off"),
    ("run: script outside the grants", ["run", "-v", "{folder}:/app", "{tool}", "cat", "{notes}"], None, 2,
     "notes.txt is outside every folder granted to the module: add -v {base}:{base}:ro"),
    ("run: no module", ["run"], None, 2, "the following arguments are required: MODULE"),
    ("image: nonexistent grant", ["image", "run", "-v", "/nonexistent:/x", "{layout}"], None, 2,
     "kiln image run: argument -v/--volume: /nonexistent: no such folder"),
    ("image: relative guest", ["image", "run", "-v", "{folder}:app", "{layout}"], None, 2,
     "GUEST an absolute path"),
    ("image: zero timeout", ["image", "run", "--timeout", "0", "{layout}"], None, 2, "above 0"),
    ("image: port out of range", ["image", "run", "-p", "99999", "{layout}"], None, 2,
     "99999 is not a port number (1-65535)"),
    ("image: not found", ["image", "run", "nope:1"], None, 2, "image nope:1 not found"),
    ("image: --port for a cli image", ["image", "run", "-p", "8080", "{layout}"], None, 2,
     "is not a server image"),
    ("image: text file entrypoint", ["image", "run", "--entrypoint", "/notes.wasm", "{layout}"], None, 2,
     "/notes.wasm in OCI layout"),
    ("image: missing entrypoint", ["image", "run", "--entrypoint", "/none.wasm", "{layout}"], None, 2,
     "/none.wasm (the entrypoint) is not a file"),
]


# `kiln serve ARGS`, and the same ARGS to `python -m kiln.server` (SERVE_CASES below).
SERVE_CASES = [
    ("serve: nonexistent grant", ["--docroot", "{folder}", "-v", "/nonexistent:/data"], None, 2,
     "argument -v/--volume: /nonexistent: no such folder"),
    ("serve: port out of range", ["--docroot", "{folder}", "--port", "99999"], None, 2,
     "argument --port: 99999 is not a port number (1-65535, or 0: any free port)"),
    ("serve: port not a number", ["--docroot", "{folder}", "--port", "http"], None, 2,
     "argument --port: 'http' is not a port number"),
    ("serve: negative workers", ["--docroot", "{folder}", "--workers", "-3"], None, 2,
     "argument --workers: -3 must be 0 or more"),
    ("serve: zero timeout", ["--docroot", "{folder}", "--timeout", "0"], None, 2,
     "argument --timeout: 0 must be above 0"),
    ("serve: negative memory", ["--docroot", "{folder}", "--memory", "-1"], None, 2,
     "argument --memory: -1 must be 0 or more"),
    ("serve: zero response cap", ["--docroot", "{folder}", "--max-response", "0"], None, 2,
     "argument --max-response: 0 must be above 0"),
    ("serve: bad size", ["--docroot", "{folder}", "--max-body", "12Q"], None, 2,
     "expected a size like 1048576, 512K, 64M"),
    ("serve: a folder as module", ["--docroot", "{folder}", "--module", "{folder}"], None, 2,
     "is a folder, not a module: give php-cgi.cwasm or php-cgi.wasm"),
    ("serve: a text file as module", ["--docroot", "{folder}", "--module", "{notes}"], None, 2,
     "notes.txt is not a wasm module"),
    ("serve: no such module", ["--docroot", "{folder}", "--module", "{base}/none.cwasm"], None, 2,
     "none.cwasm: module not found"),
    ("serve: no such docroot", ["--docroot", "{base}/none", "--module", "{tool}"], None, 2,
     "none: docroot is not a folder"),
    ("serve: native php-cgi in worker mode", ["--docroot", "{folder}", "--native-cgi", "/bin/true",
                                              "--isolation", "worker"], None, 2,
     "--isolation worker needs a php-cgi.wasm module"),
    ("serve: unknown isolation", ["--docroot", "{folder}", "--isolation", "thread"], None, 2,
     "argument --isolation: invalid choice: 'thread'"),
    ("serve: no docroot", ["--module", "{tool}"], None, 2,
     "the following arguments are required: --docroot"),
]
CASES += [(name, ["serve", *args], env, status, words) for name, args, env, status, words in SERVE_CASES]


@pytest.mark.parametrize("args, env, status, expected", [c[1:] for c in SERVE_CASES],
                         ids=[c[0] for c in SERVE_CASES])
def test_python_m_kiln_server_bad_input_is_one_line(files, args, env, status, expected):
    fill = {name: str(path) for name, path in files.items()}
    proc = subprocess.run([sys.executable, "-m", "kiln.server", *[a.format(**fill) for a in args]],
                          cwd=files["base"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert_one_line_error(proc, status, expected.format(**fill))
    assert proc.stderr.startswith("kiln.server: ")


def test_serving_the_php_cli_module_names_php_cgi(files):
    """The CLI module would start and answer 502 to everything: refused, naming php-cgi."""
    from kiln.layout import Build

    found = [b.module("php", aot=True) for b in (Build("php", "8.2.32", f) for f in ("default", "wordpress"))
             if b.module("php", aot=True).is_file() and b.module("php-cgi", aot=True).is_file()]
    if not found:
        pytest.skip("no built php.cwasm of 8.2.32 (doit php:8.2.32)")
    cli = found[0]
    for command in (["serve"], []):
        args = [*command, "--docroot", str(files["folder"]), "--module", str(cli), "--port", "0"]
        proc = (kiln(*args, cwd=files["base"]) if command else
                subprocess.run([sys.executable, "-m", "kiln.server", *args], cwd=files["base"],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}))
        assert_one_line_error(proc, 2, f"{cli} is the php CLI module; serve php-cgi: "
                                       f"--module {cli.with_name('php-cgi.cwasm')}")


@pytest.mark.parametrize("args, env, status, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kiln_bad_input_is_one_line(files, args, env, status, expected):
    fill = {name: str(path) for name, path in files.items()}
    proc = kiln(*[a.format(**fill) for a in args], cwd=files["base"], env=env)
    assert_one_line_error(proc, status, expected.format(**fill))


DOIT_CASES = [
    ("unknown version", ["php:9.9.9"], None, "unknown php version '9.9.9': known versions are"),
    ("unknown flavour", ["php:8.2.32-nope"], None, "unknown php flavour 'nope': known flavours are default"),
    ("flavour out of range", ["php_patch:7.4.33-fibers"], None,
     'there is no php 7.4.33 fibers build: the fibers flavour starts at 8.1 (when = "@8.1:"'),
    ("bad setting", ["list"], {"KILN_TIME_LIMITS": "maybe"}, "KILN_TIME_LIMITS='maybe' is not one of on, off"),
]


@pytest.mark.parametrize("args, env, expected", [c[1:] for c in DOIT_CASES], ids=[c[0] for c in DOIT_CASES])
def test_doit_bad_input_is_one_line(args, env, expected, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "KILN_BUILD_OUTPUT": str(tmp_path), **(env or {})})
    assert_one_line_error(proc, 2, expected)


def test_a_toml_syntax_error_names_the_recipe_line():
    from kiln import recipe

    path = recipe.LANGUAGES / "php" / "recipe.toml"
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if line.startswith('"8.3.8"')) + 1
    try:
        lines[number - 1] = '"8.3.8" = \n'  # a key without its value
        path.write_text("".join(lines))
        proc = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(original)
    assert_one_line_error(proc, 2, f"recipe.toml:{number}: not valid TOML: ")


def test_the_kiln_command_works_from_any_folder(files):
    version = kiln("--version", cwd=files["base"])
    assert version.returncode == 0 and version.stdout.startswith("kiln ")
    for args in (["--help"], ["run", "--help"], ["image", "run", "--help"]):
        proc = kiln(*args, cwd=files["base"])
        assert proc.returncode == 0 and "usage: kiln" in proc.stdout, (args, proc.stderr)
    proc = kiln("run", "-v", f"{files['base']}:/d:ro", str(files["tool"]), "cat", "/d/notes.txt",
                cwd=files["base"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")
    proc = kiln("image", "run", str(files["layout"]), cwd=files["base"])
    assert proc.returncode == 3, proc.stderr  # the image's Cmd: exit 3
    proc = kiln("image", "run", str(files["layout"]) + ":tool", "exit", "4", cwd=files["base"])
    assert proc.returncode == 4, proc.stderr


def test_an_installed_console_script_runs(files):
    script = Path(sys.executable).parent / "kiln"
    if not script.exists():
        pytest.skip("the project is not installed in this interpreter (scripts/setup does it)")
    proc = subprocess.run([str(script), "--version"], cwd=files["base"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("kiln ")


def test_ctrl_c_ends_an_image_run_and_removes_its_root(tool, tmp_path):
    entries = [oci.Entry("tool.wasm", tarfile.REGTYPE, 0o755, tool.read_bytes())]
    image = oci.Image(config={"Entrypoint": ["/tool.wasm"], "Cmd": ["loop"]}, layers=[oci.write_layer(entries, 0)])
    oci.write_layout(tmp_path / "layout", {"loop": oci.assemble(image, 0)})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "kiln", "image", "run", str(tmp_path / "layout")],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch),
                                 "KILN_CACHE": str(tmp_path / "cache")})
    try:
        deadline = time.monotonic() + 30
        while not list(scratch.glob("kiln-shim-*/*/rootfs/tool.wasm")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        time.sleep(1)  # compiled and spinning
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 130
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in proc.stderr.read()
    assert list(scratch.iterdir()) == []
