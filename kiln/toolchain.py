"""The wasm32-wasi C toolchain: a WASI SDK when one is configured, zig from PyPI otherwise.

Its identity (name, version, flags) is an input of every compiled output: it is
rendered into each wl-build script, so changing any part of it rebuilds them.
"""
from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import settings
from .errors import KilnError

WASI_SDK_MINIMUM = 24

# What PHP's setjmp/longjmp needs (WebAssembly exception handling, the new
# encoding that Wasmtime accepts) and the baseline features every module uses.
# Tail calls (return_call) carry the TAILCALL VM from one opcode handler to the next.
WASM_FEATURES = ("-mcpu=generic+exception_handling+bulk_memory+sign_ext+mutable_globals+nontrapping_fptoint"
                 "+tail_call")
SJLJ = ["-mllvm", "-wasm-enable-sjlj", "-mllvm", "-wasm-use-legacy-eh=false"]
# wasi-libc's emulations of mmap, signals, process clocks and getpid.
EMULATED = ["mman", "signal", "process-clocks", "getpid"]
EMULATION_DEFINES = [f"-D_WASI_EMULATED_{name.replace('-', '_').upper()}" for name in EMULATED]
EMULATION_LIBS = [f"-lwasi-emulated-{name}" for name in EMULATED]


@dataclass(frozen=True)
class Toolchain:
    name: str
    version: str
    cc: list[str]
    ar: list[str]
    ranlib: list[str]
    nm: list[str]
    cflags: list[str] = field(default_factory=list)
    cppflags: list[str] = field(default_factory=list)
    ldflags: list[str] = field(default_factory=list)
    libs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # The C++ driver of the same compiler (ICU, PHP's ext/intl): same target, sysroot, flags;
    # links libc++ and libc++abi built for wasm32-wasi (single-threaded: no std::mutex).
    cxx: list[str] = field(default_factory=list)

    def identity(self) -> dict:
        """What a compiled output depends on (paths excluded: moving a venv is no change)."""
        return {"name": self.name, "version": self.version, "cflags": self.cflags,
                "cppflags": self.cppflags, "ldflags": self.ldflags, "libs": self.libs}

    def shell(self, words: list[str]) -> str:
        return shlex.join(words)


def _common_cflags() -> list[str]:
    # zig makes __DATE__/__TIME__ errors; SOURCE_DATE_EPOCH pins their values instead.
    # -g0: zig cc emits DWARF by default (12 of a 17 MB php.wasm); modules ship without it.
    flags = ["-O2", "-g0", WASM_FEATURES, *SJLJ, "-Wno-error=date-time"]
    flags += shlex.split(settings.extra_cflags())
    return flags


def _common_ldflags() -> list[str]:
    # The exception-handling lowering happens at link time too. -s strips where the linker
    # sees it (configure's probes, libraries); PHP's libtool drops it, so collect strips too.
    return ["-s", WASM_FEATURES, *SJLJ]


def _cache_base() -> str:
    """Paths under this are hashed relative, so another checkout or build tree with the same
    layout shares entries: the project and its build output (the shim header lives in the one,
    the trees in the other), unless they have nothing but / in common."""
    common = os.path.commonpath([str(settings.ROOT), str(settings.build_output())])
    return common if common != os.sep else str(settings.build_output())


def _compiler_cache(cc: list[str], compiler: str) -> tuple[list[str], dict[str, str]]:
    """Put ccache in front of the compiler when there is one (KILN_CCACHE=auto|on|off).

    zig's own cache knows a source file by its inode and mtime, so a patched, copied or
    reconfigured tree recompiles everything; ccache keys on content (direct mode: the source
    and every header it includes), with paths made relative to the project so two trees
    share entries (_cache_base). Not part of the identity: a hit is the object a miss would make."""
    mode = settings.compiler_cache()
    found = shutil.which("ccache")
    if mode == "off" or (mode == "auto" and not found):
        return cc, {}
    if not found:
        raise KilnError("KILN_CCACHE=on but ccache is not installed: apt-get install ccache "
                        "(scripts/setup does) or set KILN_CCACHE=auto")
    return [found, *cc], {
        "CCACHE_DIR": str(settings.cache_dir() / "ccache"),
        "CCACHE_BASEDIR": _cache_base(),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_COMPILERTYPE": "clang",
        # The compiler's identity without stat-ing it on every call.
        "CCACHE_COMPILERCHECK": f"string:{compiler}",
        # Builds write config headers just before compiling, and SOURCE_DATE_EPOCH pins
        # __DATE__/__TIME__: neither is a reason to fall back to the slow preprocessor mode.
        "CCACHE_SLOPPINESS": "include_file_mtime,include_file_ctime,time_macros",
        "CCACHE_MAXSIZE": "10G",
    }


def _zig() -> Toolchain:
    try:
        import ziglang
    except ImportError:
        raise KilnError("no wasm32-wasi toolchain: ziglang is not installed "
                        "(pip install -r requirements.txt) and WASI_SDK_PATH is not set") from None
    zig = Path(ziglang.__file__).parent / "zig"
    if not os.access(zig, os.X_OK):
        raise KilnError(f"the ziglang package has no runnable zig at {zig}: reinstall it "
                        "(pip install --force-reinstall -r requirements.txt)")
    version = _zig_version(str(zig))
    target = ["-target", "wasm32-wasi"]
    cc, cache_env = _compiler_cache([str(zig), "cc", *target], f"zig {version}")
    cxx, _ = _compiler_cache([str(zig), "c++", *target], f"zig {version}")
    return Toolchain(
        name="zig",
        version=version,
        cc=cc,
        ar=[str(zig), "ar"],
        ranlib=[str(zig), "ranlib"],
        nm=["nm"],  # only probed by libtool, which never needs symbol lists in a static build
        cflags=_common_cflags(),
        cppflags=EMULATION_DEFINES,
        ldflags=_common_ldflags(),
        libs=EMULATION_LIBS,
        # zig builds wasi-libc and compiler-rt into its cache on first use.
        env={"ZIG_GLOBAL_CACHE_DIR": str(settings.cache_dir() / "zig"), **cache_env},
        cxx=cxx,
    )


@functools.lru_cache(maxsize=None)
def _zig_version(zig: str) -> str:
    return subprocess.run([zig, "version"], capture_output=True, text=True, check=True).stdout.strip()


def _wasi_sdk(root: Path, variable: str) -> Toolchain:
    clang = root / "bin" / "clang"
    if not os.access(clang, os.X_OK):
        raise KilnError(f"{variable}={root} has no bin/clang: install WASI SDK >= {WASI_SDK_MINIMUM} there "
                        f"or unset {variable} to use the embedded zig toolchain")
    version_file = root / "VERSION"
    version = version_file.read_text().split()[0] if version_file.is_file() else ""
    clang_version = subprocess.run([str(clang), "--version"], capture_output=True, text=True).stdout
    if not version:
        version = clang_version.splitlines()[0] if clang_version else "unknown"
    major = re.match(r"(\d+)", version)
    if major and int(major.group(1)) < WASI_SDK_MINIMUM and "clang" not in version:
        raise KilnError(f"{variable}={root} is WASI SDK {version}: PHP's setjmp/longjmp needs "
                        f"WASI SDK >= {WASI_SDK_MINIMUM} (new exception-handling encoding)")
    sysroot = root / "share" / "wasi-sysroot"
    target = ["--target=wasm32-wasi", f"--sysroot={sysroot}"]
    cc, cache_env = _compiler_cache([str(clang), *target], f"wasi-sdk {version}")
    cxx, _ = _compiler_cache([str(root / "bin" / "clang++"), *target], f"wasi-sdk {version}")
    return Toolchain(
        name="wasi-sdk",
        version=version,
        cc=cc,
        ar=[str(root / "bin" / "llvm-ar")],
        ranlib=[str(root / "bin" / "llvm-ranlib")],
        nm=[str(root / "bin" / "llvm-nm")],
        cflags=_common_cflags(),
        cppflags=EMULATION_DEFINES,
        ldflags=_common_ldflags(),
        libs=["-lsetjmp", *EMULATION_LIBS],
        env=cache_env,
        cxx=cxx,
    )


def current() -> Toolchain:
    """The toolchain this process builds with (WASI_SDK_PATH, then WASI_SDK_ROOT, then zig)."""
    for variable in ("WASI_SDK_PATH", "WASI_SDK_ROOT"):
        value = os.environ.get(variable)
        if value:
            return _wasi_sdk(Path(value), variable)
    return _zig()


@functools.lru_cache(maxsize=None)
def autoconf_version() -> str:
    """The build host's autoconf ("autoconf 2.71"), needed to regenerate a patched configure."""
    try:
        out = subprocess.run(["autoconf", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        raise KilnError("autoconf is not installed, and a patch of this release needs configure "
                        "regenerated: apt-get install autoconf (scripts/setup does)") from None
    match = re.search(r"(\d+\.\d+\S*)", out.splitlines()[0] if out else "")
    return f"autoconf {match.group(1) if match else 'unknown'}"
