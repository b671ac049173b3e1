"""The machine's own PHP (kiln/native.py) and the apt sources fill-mirror reads: what scripts/setup
installs on Debian 12, 13 and other systems, and how every native binary is found. No test here
asserts which PHP the host has."""
import os
import re
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import native  # noqa: E402
from kiln.errors import KilnError  # noqa: E402

DEBIAN_12 = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
DEBIAN_13 = {"ID": "debian", "VERSION_ID": "13", "PRETTY_NAME": "Debian GNU/Linux 13 (trixie)"}
UBUNTU = {"ID": "ubuntu", "ID_LIKE": "debian", "VERSION_ID": "24.04", "PRETTY_NAME": "Ubuntu 24.04 LTS"}


def test_each_debian_release_gets_the_php_it_ships():
    assert native.release_for(DEBIAN_12, []) == "8.2"
    assert native.release_for(DEBIAN_13, []) == "8.4"
    assert native.packages("8.4")[:3] == ["php8.4-cli", "php8.4-cgi", "php8.4-fpm"]
    assert "php8.4-opcache" in native.packages("8.4")


def test_another_system_gets_the_newest_php_apt_knows_at_or_above_the_minimum():
    assert native.release_for(UBUNTU, ["7.4", "8.3", "8.10", "8.1"]) == "8.10"
    with pytest.raises(KilnError) as error:
        native.release_for(UBUNTU, ["7.4"])
    message = str(error.value)
    assert "\n" not in message and "Ubuntu 24.04 LTS" in message and "apt-get update" in message
    assert "native.toml" in message


def test_os_release_is_read_with_quotes_and_comments(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('# a comment\nID=debian\nVERSION_ID="13"\nPRETTY_NAME="Debian GNU/Linux 13 (trixie)"\n')
    assert native.os_release(path) == DEBIAN_13
    assert native.os_release(tmp_path / "missing") == {}


def _fake_php(folder: Path, name: str, version: str) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\necho 'PHP {version} (cli) (built: today)'\n")
    script.chmod(0o755)


def test_binaries_are_found_by_release_and_kind(tmp_path, monkeypatch):
    """Only PHP 8.1 and 8.3 on the search path (not this distribution's release): the newest
    wins for every kind, and its version is what `-v` says."""
    for release in ("8.1", "8.3", "7.4"):
        _fake_php(tmp_path, f"php{release}", f"{release}.9")
    _fake_php(tmp_path, "php-cgi8.3", "8.3.9")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(native, "EXTRA_DIRS", ())
    native.release.cache_clear()
    try:
        assert native.installed_releases() == ["8.3", "8.1", "7.4"]
        assert native.release() == "8.3"
        assert native.binary("cli") == str(tmp_path / "php8.3")
        assert native.binary("cgi") == str(tmp_path / "php-cgi8.3")
        assert native.describe("cli") == f"PHP 8.3.9 ({tmp_path / 'php8.3'})"
        with pytest.raises(KilnError, match=r"^no native php-fpm8\.3: apt-get install php8\.3-fpm "):
            native.binary("fpm")
    finally:
        native.release.cache_clear()


def test_the_hosts_own_php_is_found_and_reports_a_version():
    path = native.binary("cli")
    assert os.access(path, os.X_OK)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", native.version(path))


def test_setup_asks_for_package_names_with_one_command():
    proc = subprocess.run([sys.executable, "-m", "kiln.native", "packages"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"php(\d+\.\d+)-cli( php\1-[a-z0-9]+)+\n", proc.stdout)
    wrong = subprocess.run([sys.executable, "-m", "kiln.native", "nonsense"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage:")


@pytest.fixture(scope="module")
def fill_mirror():
    loader = SourceFileLoader("fill_mirror", str(ROOT / "scripts" / "fill-mirror"))
    module = module_from_spec(spec_from_loader("fill_mirror", loader))
    loader.exec_module(module)
    return module


def test_fill_mirror_reads_one_line_sources(fill_mirror):
    text = ("# deb http://archive.invalid/debian trixie main\n"
            "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "http://archive.invalid/debian trixie main contrib\n"
            "deb http://security.invalid/debian-security trixie-security main\n"
            "deb http://vendor.invalid/apt stable-cloud main\n")
    entries = list(fill_mirror.one_line_entries(text))
    assert entries[0] == {"Types": "deb", "URIs": "http://archive.invalid/debian", "Suites": "trixie",
                          "Components": "main contrib",
                          "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    assert [fill_mirror.is_main_archive(e) for e in entries] == [True, False, False]


def test_fill_mirror_reads_deb822_sources(fill_mirror):
    text = ("Types: deb\nURIs: http://archive.invalid/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
            "Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\n"
            "Components: main\n")
    stanzas = list(fill_mirror.deb822_stanzas(text))
    assert [fill_mirror.is_main_archive(s) for s in stanzas] == [True, False]


def test_reports_say_which_native_php_they_compared_with(tmp_path):
    from kiln import report
    entry = {"build": "8.2.32", "version": "8.2.32", "flavour": "default", "stages": {}, "sizes": {},
             "smoke": None,
             "bench": {"native": {"php": "/usr/bin/php8.3", "version": "8.3.9"}, "bench": {},
                       "sizes": {}, "ratios": [["Zend/bench.php", 3.0]]},
             "conformance": {"driver": "8.3.9", "totals": {"passed": 1, "failed": 0, "skipped": 0, "rate": 1.0},
                             "per_folder": {}}}
    md, html = report.write({"generated": "now", "builds": [entry], "not_built": [],
                             "reference_images_mb": []}, tmp_path)[1:]
    text = md.read_text()
    assert "- 8.2.32: PHP 8.3.9 (`/usr/bin/php8.3`)" in text
    assert "driven by native PHP 8.3.9" in text
    assert "native: PHP 8.3.9 (<code>/usr/bin/php8.3</code>)" in html.read_text()
