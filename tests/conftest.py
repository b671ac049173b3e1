import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def php_builds():
    """Both testable releases, end to end (images too when an engine is up), built once per run."""
    from doit_run import build
    from kiln import recipe
    from kiln.layout import Build

    php = recipe.language("php")
    build(*[f"php:{v}" for v in php.testable])
    return {v: Build("php", v, "default") for v in php.testable}


# A tiny WASI command for the runner's tests (tests/test_runner.py, tests/test_cli_errors.py).
# One program with subcommands: a single zig compile keeps the fixture fast.
TOOL_C = r"""
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static int recurse(volatile int n) { volatile char pad[256]; pad[0] = (char)n; return recurse(n + 1) + pad[0]; }

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "args";
    if (!strcmp(cmd, "args")) {
        printf("argc=%d\n", argc);
        for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
        int n = 0;
        for (char **e = environ; *e; e++) { printf("env:%s\n", *e); n++; }
        printf("envc=%d\n", n);
        return 0;
    }
    if (!strcmp(cmd, "echo")) {          /* stdin -> stdout, a marker on stderr */
        char buf[4096]; size_t got;
        while ((got = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, got, stdout);
        fputs("done\n", stderr);
        return 0;
    }
    if (!strcmp(cmd, "exit")) exit(atoi(argv[2]));
    if (!strcmp(cmd, "return")) return atoi(argv[2]);
    if (!strcmp(cmd, "loop")) { volatile unsigned long i = 0; for (;;) i++; }
    if (!strcmp(cmd, "write")) {         /* write argv[3] to file argv[2] */
        FILE *f = fopen(argv[2], "w");
        if (!f) { printf("open failed: %s\n", strerror(errno)); return 1; }
        fputs(argv[3], f);
        if (fclose(f)) { printf("close failed: %s\n", strerror(errno)); return 1; }
        puts("written");
        return 0;
    }
    if (!strcmp(cmd, "cat")) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { printf("open failed: %s\n", strerror(errno)); return 1; }
        char buf[4096]; size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, got, stdout);
        fclose(f);
        return 0;
    }
    if (!strcmp(cmd, "ls")) {
        DIR *d = opendir(argv[2]);
        if (!d) { printf("opendir failed: %s\n", strerror(errno)); return 1; }
        struct dirent *ent;
        while ((ent = readdir(d))) printf("%s\n", ent->d_name);
        closedir(d);
        return 0;
    }
    if (!strcmp(cmd, "alloc")) {         /* malloc argv[2] MiB and touch it */
        size_t size = (size_t)atoi(argv[2]) << 20;
        char *volatile p = malloc(size);  /* volatile: clang may elide an unused malloc */
        if (!p) { puts("alloc failed"); return 1; }
        memset(p, 1, size);
        printf("alloc ok%.0d\n", p[size - 1] - 1);
        return 0;
    }
    if (!strcmp(cmd, "trap")) __builtin_trap();
    if (!strcmp(cmd, "overflow")) return recurse(0);
    return 99;
}
"""


@pytest.fixture(scope="session")
def tool(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("runner-modules")
    src = build / "tool.c"
    src.write_text(TOOL_C)
    out = build / "tool.wasm"
    proc = subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O2", "-s",
         str(src), "-o", str(out)],
        capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"zig cc failed:\n{proc.stderr}")
    return out
