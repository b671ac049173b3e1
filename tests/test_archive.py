"""Unsafe tarballs are refused before anything is written; corrupt ones fail cleanly."""
import io
import os
import tarfile

import pytest

from kiln import archive, patching
from kiln.errors import KilnError


def make_tar(path, entries):
    with tarfile.open(path, "w:xz") as tar:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = extra.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra
                tar.addfile(info)
    return path


GOOD = [("php-1.0", "dir", ""), ("php-1.0/main.c", "file", "int main;\n"),
        ("php-1.0/link", "symlink", "main.c")]


def test_a_good_tarball_unpacks_into_place(tmp_path):
    tarball = make_tar(tmp_path / "php-1.0.tar.xz", GOOD)
    dest = archive.extract(tarball, tmp_path / "out" / "php-1.0", "php-1.0")
    assert (dest / "main.c").read_text() == "int main;\n"
    assert (dest / "link").resolve() == (dest / "main.c").resolve()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["php-1.0"]


@pytest.mark.parametrize(
    "entry, why",
    [
        (("/etc/evil", "file", "x"), "absolute path"),
        (("php-1.0/../../evil", "file", "x"), "'..' in path"),
        (("php-1.0/out", "symlink", "../../etc/passwd"), "symlink escaping"),
        (("php-1.0/abs", "symlink", "/etc/passwd"), "symlink to absolute path"),
        (("php-1.0/hard", "hardlink", "../outside"), "hard link escaping"),
    ],
)
def test_unsafe_entries_are_refused_and_nothing_is_written(tmp_path, entry, why):
    tarball = make_tar(tmp_path / "php-1.0.tar.xz", GOOD + [entry])
    out = tmp_path / "out"
    with pytest.raises(KilnError, match=why) as info:
        archive.extract(tarball, out / "php-1.0", "php-1.0")
    assert entry[0] in str(info.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_truncated_tarball_fails_with_a_fix(tmp_path):
    noise = os.urandom(50000).hex()  # incompressible, so cutting the file cuts the data
    tarball = make_tar(tmp_path / "php-1.0.tar.xz", GOOD + [("php-1.0/big", "file", noise)])
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(KilnError, match="truncated or corrupt: delete it and fetch it again"):
        archive.extract(tarball, tmp_path / "out" / "php-1.0", "php-1.0")
    assert not (tmp_path / "out" / "php-1.0").exists()


def test_a_patch_that_no_longer_applies_names_patch_and_file(tmp_path):
    tree = tmp_path / "tree"
    (tree / "Zend").mkdir(parents=True)
    (tree / "Zend" / "zend_alloc.c").write_text("one\ntwo\nthree\n")
    good = tmp_path / "0001-good.patch"
    good.write_text("Why: a header patch(1) ignores.\n\n--- a/Zend/zend_alloc.c\n+++ b/Zend/zend_alloc.c\n"
                    "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n")
    patching.apply(tree, good)
    assert (tree / "Zend" / "zend_alloc.c").read_text() == "one\nTWO\nthree\n"
    stale = tmp_path / "0002-stale.patch"
    stale.write_text("--- a/Zend/zend_alloc.c\n+++ b/Zend/zend_alloc.c\n"
                     "@@ -1,3 +1,3 @@\n uno\n-dos\n+DOS\n tres\n")
    with pytest.raises(KilnError, match=r"patch 0002-stale.patch no longer applies to Zend/zend_alloc.c"):
        patching.apply(tree, stale)
    # The dry run came first: the tree is exactly as the good patch left it.
    assert (tree / "Zend" / "zend_alloc.c").read_text() == "one\nTWO\nthree\n"
