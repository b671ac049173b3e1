"""OpenPGP verification with gpgv: a real throwaway key, a good and a tampered file."""
import subprocess

import pytest

from kiln import settings, signature
from kiln.errors import KilnError
from kiln.recipe import language


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    subprocess.run(gpg + ["--quick-gen-key", "Kiln Test <test@kiln.invalid>", "ed25519", "sign", "1d"],
                   check=True, capture_output=True)
    folder = tmp_path_factory.mktemp("signed")
    archive = folder / "php-1.0.tar.xz"
    archive.write_bytes(b"release bytes\n" * 100)
    subprocess.run(gpg + ["--armor", "--detach-sign", "-o", str(folder / "php-1.0.tar.xz.asc"), str(archive)],
                   check=True, capture_output=True)
    keys = folder / "keys.asc"
    keys.write_bytes(subprocess.run(gpg + ["--armor", "--export"], check=True, capture_output=True).stdout)
    return archive, folder / "php-1.0.tar.xz.asc", keys


def test_a_good_signature_names_the_signer(signed):
    archive, asc, keys = signed
    assert "Kiln Test" in signature.verify(archive, asc, keys)


def test_a_tampered_file_is_refused(signed, tmp_path):
    archive, asc, keys = signed
    bad = tmp_path / archive.name
    bad.write_bytes(archive.read_bytes() + b"!")
    with pytest.raises(KilnError, match="does not verify against keys.asc .the signature does not match the file's bytes."):
        signature.verify(bad, asc, keys)
    garbage = tmp_path / asc.name
    garbage.write_text("not a signature\n")
    with pytest.raises(KilnError, match="it is not an OpenPGP signature"):
        signature.verify(archive, garbage, keys)


def test_a_signature_by_someone_else_is_refused(signed):
    archive, asc, _ = signed
    php_keys = language("php").folder / "release-keys.asc"
    with pytest.raises(KilnError, match="tampered with"):
        signature.verify(archive, asc, php_keys)


@pytest.mark.parametrize("version", ["7.4.33", "8.2.32"])
def test_the_real_releases_verify_against_the_php_release_keys(version):
    mirror = settings.build_output() / "mirror"
    archive = mirror / f"php-{version}.tar.xz"
    if not (archive.is_file() and archive.with_name(archive.name + ".asc").is_file()):
        pytest.skip("no local mirror (scripts/setup fills build-output/mirror)")
    signer = signature.verify(archive, archive.with_name(archive.name + ".asc"),
                              language("php").folder / "release-keys.asc")
    assert "@" in signer or "php" in signer.lower()


def test_a_bad_signature_condemns_tarball_and_signature(signed, tmp_path, monkeypatch):
    """The download stage itself: the pinned bytes arrive with a signature by someone else;
    the stage fails with one line and keeps neither file, so the next run fetches both anew."""
    import hashlib

    from doit.exceptions import TaskFailed

    from tasks.download import _download

    archive, asc, _ = signed
    mirror, sources = tmp_path / "mirror", tmp_path / "sources"
    mirror.mkdir()
    (mirror / archive.name).write_bytes(archive.read_bytes())
    (mirror / asc.name).write_bytes(asc.read_bytes())
    monkeypatch.setenv("KILN_SOURCES", str(sources))
    php_keys = language("php").folder / "release-keys.asc"
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    result = _download(archive.name, sha256, [], [str(mirror)], php_keys)
    assert isinstance(result, TaskFailed)
    message = result.message.strip()
    assert message.startswith("kiln: ") and "\n" not in message and "tampered with" in message
    assert "not among the release keys" in message and "gpgv" not in message
    assert message.endswith(f"(signature from {mirror / asc.name})")
    assert sorted(p.name for p in sources.iterdir() if not p.name.startswith(".")) == []
