import subprocess
import sys

import pytest

from kiln import runner, wasmfile


@pytest.fixture(scope="module")
def with_debug(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dbg")
    (folder / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("hello"); return 7; }\n')
    module = folder / "hello.wasm"
    subprocess.run([sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2", "-g",
                    str(folder / "hello.c"), "-o", str(module)], check=True)
    return module


def test_debug_sections_go_and_the_module_still_runs(with_debug, tmp_path):
    data = with_debug.read_bytes()
    names = [name for _, name, _, _ in wasmfile.sections(data) if name]
    assert any(n.startswith(".debug_") for n in names)
    stripped = wasmfile.strip_debug(data)
    kept = [name for _, name, _, _ in wasmfile.sections(stripped) if name]
    assert not any(n.startswith(".debug_") for n in kept) and "name" in kept
    assert len(stripped) < len(data) / 2
    assert wasmfile.strip_debug(stripped) == stripped
    out = tmp_path / "stripped.wasm"
    out.write_bytes(stripped)
    result = runner.run(out, ["hello"])
    assert (result.exit_code, result.stdout) == (7, b"hello\n")


def test_garbage_is_refused():
    with pytest.raises(ValueError):
        wasmfile.strip_debug(b"\0asm\x01\0\0\0\x0a\xff\xff\x0f")
    with pytest.raises(ValueError):
        wasmfile.strip_debug(b"not wasm")
