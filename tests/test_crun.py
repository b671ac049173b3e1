"""Kiln's images under a real container engine's wasm handler: podman 5.4 with Debian 13's
crun 1.21 (+WASM:wasmedge), in a Debian 13 root under KILN_CACHE on Debian 12 (kiln/crun.py).

The slow tests build 8.2.32's `compat` flavour with its images (the Docker engine makes them,
tests/services.py), load Kiln's own OCI layouts into podman, and run the seed demo's two
commands through crun's handler: the demo page from the cli image with a docroot mounted, and
the server image serving it on a loopback port. They skip, with the reason, only where the
root cannot be made (not root, no debootstrap, no apt)."""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
import tomllib
import urllib.request
from pathlib import Path

import pytest

from kiln import crun, debroot, optimize, recipe, templating
from kiln import images as images_module
from kiln.errors import KilnError
from kiln.layout import Build

from doit_run import build
from services import docker_host  # noqa: F401  (fixture)
from spec_hashes import tools as fixed_tools

ROOT = Path(__file__).resolve().parent.parent
VERSION = "8.2.32"
DOCROOT = ROOT / "languages" / "php" / "smoke" / "docroot"


# ---------------------------------------------------------------------------------------------
# Without the root


def test_compat_flavour_leaves_out_what_crun_does_not_turn_on():
    from tasks import configure
    resolved = recipe.language("php").resolve(VERSION, "compat")
    assert resolved.vm_kind == "CALL"
    assert list(resolved.post_link) == ["--strip-eh", "-O1"]
    mcpu = optimize.build_mcpu(resolved.cflags)
    assert "tail_call" not in mcpu and "exception_handling" in mcpu   # stripped after linking
    script = configure.render_script(Build("php", VERSION, "compat"), fixed_tools())
    ldflags = next(line for line in script.splitlines() if line.startswith("LDFLAGS="))
    assert ldflags.endswith(f"{mcpu}'"), ldflags   # zig builds wasi-libc for the link's -mcpu
    default = configure.render_script(Build("php", VERSION, "default"), fixed_tools())
    assert "LDFLAGS=-s\n" in default


def test_a_post_link_option_must_be_an_option(tmp_path):
    text = (ROOT / "languages" / "php" / "recipe.toml").read_text()
    bad = text.replace('post_link = ["--strip-eh", "-O1"]', 'post_link = ["strip-eh"]')
    assert bad != text
    (tmp_path / "recipe.toml").write_text(bad)
    with pytest.raises(KilnError, match=r"variant compat: `post_link` is a list of wasm-opt options"):
        recipe.load(tmp_path / "recipe.toml")


def test_the_root_script_and_podman_config_render():
    context = {"root": "/cache/debian-trixie-crun", "suite": debroot.SUITE, "conf_dir": "/etc/containers"}
    script = templating.render("crun-podman.sh.j2", **context)
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert "unshare --mount --propagation private" in script
    assert 'mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"' in script
    containers = tomllib.loads(templating.render("containers.conf.j2", **context))
    assert containers["containers"]["cgroups"] == "disabled"
    assert containers["engine"]["runtime"] == "crun"
    storage = tomllib.loads(templating.render("storage.conf.j2", **context))
    assert storage["storage"]["driver"] == "vfs"


def test_run_arguments_name_the_handler_and_map_host_folders(tmp_path):
    podman = crun.Podman(("/cache/debian-trixie-crun.podman",), True, "root", "podman 5")
    words, binds = crun.run_args(podman, "php-wasm:8.2.32-cli-compat", ["/docroot/index.php"],
                                 volumes=[(tmp_path, "/docroot")], env={"A": "1"}, timeout=9.5)
    assert words[:2] == ["run", "--rm"] and "--network=none" in words
    assert words[words.index("--annotation") + 1] == "run.oci.handler=wasm"
    assert words[words.index("--platform") + 1] == "wasip1/wasm"
    assert "--timeout=10" in words and "-i" not in words
    assert words[words.index("--volume") + 1] == f"/host{tmp_path.resolve()}:/docroot:ro"
    assert words[words.index("--env") + 1] == "A=1"
    assert words[-2:] == ["php-wasm:8.2.32-cli-compat", "/docroot/index.php"]
    assert binds == [tmp_path]
    native = crun.Podman(("/usr/bin/podman",), False, "/usr/bin/podman", "podman 5")
    assert native.path(tmp_path) == str(tmp_path.resolve())


# ---------------------------------------------------------------------------------------------
# Through crun's WasmEdge handler


@pytest.fixture(scope="module")
def podman() -> crun.Podman:
    if crun.find() is None and shutil.which("debootstrap") is None \
            and shutil.which("apt-get") is None:
        pytest.skip("no podman with crun's WasmEdge handler, and no debootstrap or apt to make a Debian 13 root for one")
    try:
        return crun.provision()
    except KilnError as exc:
        if "needs root" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture(scope="module")
def images(podman, docker_host):  # noqa: F811
    """8.2.32's default and compat builds with their images, the cli and server OCI layouts
    loaded into podman under their Kiln tags: {(flavour, kind): (tag, layout)}."""
    build(f"php:{VERSION}", f"php:{VERSION}-compat")
    loaded = {}
    for flavour in ("default", "compat"):
        b = Build("php", VERSION, flavour)
        for kind, name in crun.load_build(podman, b).items():
            loaded[(flavour, kind)] = (name, images_module.layout_path(b, kind))
    return loaded


@pytest.mark.slow
def test_default_images_are_refused_by_the_handler_for_their_wasm_features(podman, images):
    """crun turns on no exception handling (nor tail calls): why the compat flavour exists."""
    name, _ = images[("default", "cli")]
    done = crun.run(podman, name, ["-v"], timeout=120)
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0
    assert "requires enabling Exception Handling proposal" in out, out
    assert "[libcrun:wasmedge]: could not get wasmedge result from VM" in out, out


@pytest.mark.slow
def test_cli_image_prints_the_demo_page_with_a_docroot_mounted(podman, images):
    name, _ = images[("compat", "cli")]
    done = crun.run(podman, name, ["/docroot/index.php"], volumes=[(DOCROOT, "/docroot")],
                    timeout=300)
    page = done.stdout.decode()
    assert done.returncode == 0, page + done.stderr.decode(errors="replace")
    lines = page.splitlines()
    assert lines[0] == f'Hello from PHP {VERSION} running on "wasi (none) 0.0.0 0.0.0 wasm32"', page
    # Docker+Wasm in the demo: PATH and HOSTNAME, and `/` = docroot etc php.wasm. crun passes
    # podman's whole environment and grants the container's root, its mounts included.
    assert lines[1] == "Running with 4 environment variables", page
    assert sorted(line.strip() for line in lines[2:6]) == ["HOME", "HOSTNAME", "PATH", "container"]
    listing = page.split("Contents of /:\n", 1)[1].split()
    assert listing == ["dev", "docroot", "etc", "php.wasm", "proc", "run", "sys"], page


@pytest.mark.slow
def test_the_handler_does_not_pass_the_modules_exit_codes_on(podman, images):
    """crun's handler exits 0 whenever WasmEdge returns and 1 when it does not (docs/images.md)."""
    name, _ = images[("compat", "cli")]
    assert crun.run(podman, name, ["-r", "exit(3);"], timeout=120).returncode == 0
    trapped = crun.run(podman, name, ["-r", "echo 'before'; trigger_error('kiln', E_USER_ERROR);"],
                       timeout=120)
    out = (trapped.stdout + trapped.stderr).decode(errors="replace")
    assert trapped.returncode == 1 and out.startswith("before"), out
    assert "unreachable" in out and "could not get wasmedge result from VM" in out, out
    # podman's --timeout ends a container that runs too long: 255, which the handler never gives.
    slow = crun.run(podman, name, ["-r", "sleep(30); echo 'not reached';"], timeout=2)
    assert slow.returncode == 255 and b"not reached" not in slow.stdout
    assert podman.check(["ps", "-a", "--quiet"]).strip() == ""


@pytest.mark.slow
def test_containers_run_side_by_side(podman, images):
    """Every run shares the root's /run and podman's file locks (templates/crun-podman.sh.j2);
    with a /run of their own, runs at the same time broke each other's containers."""
    name, _ = images[("compat", "cli")]
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda i: crun.run(podman, name, ["-r", f"usleep(200000); echo {i};"],
                                                timeout=200), range(8)))
    assert [(r.returncode, r.stdout.decode().strip()) for r in runs] == [(0, str(i)) for i in range(8)], \
        [r.stderr.decode(errors="replace")[-300:] for r in runs]


@pytest.mark.slow
def test_server_image_serves_the_demo_page_on_a_loopback_port(podman, images):
    name, layout = images[("compat", "server")]
    with crun.server(podman, layout, name, port=0, timeout=300, access_log=None) as server:
        with urllib.request.urlopen(f"{server.url}/index.php?from=crun", timeout=330) as answer:
            body = answer.read().decode()
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/html")
    assert f'Hello from PHP {VERSION} running on "wasi (none) 0.0.0 0.0.0 wasm32"' in body, body
    assert "Contents of /:" in body and "php-cgi.wasm" in body, body
