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


def test_only_patches_touching_configure_inputs_reconfigure(tmp_path):
    from kiln.patching import touched_paths, touches_configure

    def patch(*paths):
        path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.patch"
        path.write_text("a header line\n" + "".join(
            f"--- a/{p}\n+++ b/{p}\n@@ -1 +1 @@\n-x\n+y\n" for p in paths))
        return path

    c_only = patch("Zend/zend_alloc.c", "main/php.h")
    assert touched_paths(c_only) == ["Zend/zend_alloc.c", "main/php.h"]
    assert not touches_configure(c_only)
    for configure_input in ("ext/opcache/config.m4", "configure", "main/php_config.h.in",
                            "sapi/cli/Makefile.frag", "build/php.m4"):
        assert touches_configure(patch("Zend/zend.c", configure_input)), configure_input


def test_compiler_cache_setting(monkeypatch):
    import shutil

    import pytest

    from kiln import toolchain
    from kiln.errors import KilnError

    monkeypatch.setenv("KILN_CCACHE", "off")
    assert not toolchain.current().cc[0].endswith("ccache")
    monkeypatch.setenv("KILN_CCACHE", "sometimes")
    with pytest.raises(KilnError, match="KILN_CCACHE='sometimes' is not one of auto, on, off"):
        toolchain.current()
    if shutil.which("ccache"):
        monkeypatch.setenv("KILN_CCACHE", "on")
        tools = toolchain.current()
        assert tools.cc[0].endswith("ccache") and tools.env["CCACHE_DIR"].endswith("ccache")
        # Not part of what outputs depend on: a hit is the object a miss would make.
        monkeypatch.setenv("KILN_CCACHE", "off")
        assert toolchain.current().identity() == tools.identity()
