"""The patch stage's in-place refresh: unchanged files keep their inode (the compiler cache
recognises them), files a previous series changed get the pristine bytes back."""
import os

from tasks.patch import refresh


def test_refresh_restores_only_what_differs(tmp_path):
    pristine, tree = tmp_path / "pristine", tmp_path / "tree"
    (pristine / "sub").mkdir(parents=True)
    (pristine / "a.c").write_text("A")
    (pristine / "sub" / "b.c").write_text("B")
    assert refresh(pristine, tree) == 2
    inode = (tree / "a.c").stat().st_ino
    assert refresh(pristine, tree) == 0
    (tree / "sub" / "b.c").write_text("patched")
    (tree / "build.o").write_text("object")  # build products are not the refresh's business
    assert refresh(pristine, tree) == 1
    assert (tree / "sub" / "b.c").read_text() == "B"
    assert (tree / "a.c").stat().st_ino == inode
    assert os.stat(tree / "sub" / "b.c").st_mtime_ns == os.stat(pristine / "sub" / "b.c").st_mtime_ns
