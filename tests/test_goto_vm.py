"""kiln/goto_vm.py: the GOTO VM's two jumps into its loop go through the dispatch (fast, on text
shaped as the generator writes it), and on a real build LLVM's "Fix Irreducible Control Flow"
pass then changes nothing, which is what makes turning it off safe (slow: one compile of
zend_execute.c with the pass, ~2 CPU-minutes and ~6 GiB, one without)."""
import os
import re
import shlex
import subprocess

import pytest

from kiln import goto_vm, toolchain
from kiln.errors import KilnError
from kiln.layout import Build

GENERATED = """\
#define SAVE_OPLINE_EX()
#define HANDLE_EXCEPTION() ZEND_ASSERT(EG(exception)); goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL
#define HANDLE_EXCEPTION_LEAVE() ZEND_ASSERT(EG(exception)); goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL
#define ZEND_VM_CONTINUE() goto *(void**)(OPLINE->handler)
#define ZEND_VM_INTERRUPT()              goto zend_interrupt_helper_SPEC;
#define ZEND_VM_LOOP_INTERRUPT()         goto zend_interrupt_helper_SPEC;
ZEND_API void execute_ex(zend_execute_data *ex)
{
\tLOAD_OPLINE();
\tZEND_VM_LOOP_INTERRUPT_CHECK();

\twhile (1) {
\t\tgoto *(void**)(OPLINE->handler);
"""
FLAG = "-wasm-disable-fix-irreducible-control-flow-pass"


def test_exceptions_and_the_entry_interrupt_go_through_the_dispatch():
    out = goto_vm.rewrite(GENERATED)
    assert out.startswith(goto_vm.MARKER)
    assert "goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL" not in out
    assert ("#define HANDLE_EXCEPTION() ZEND_ASSERT(EG(exception)); LOAD_OPLINE(); ZEND_VM_CONTINUE()\n"
            in out)
    assert "#define HANDLE_EXCEPTION_LEAVE() ZEND_ASSERT(EG(exception)); LOAD_OPLINE(); ZEND_VM_LEAVE()\n" in out
    entry = out[out.index("\tLOAD_OPLINE();\n"):out.index("\twhile (1)")]
    # The check stays zend_execute.c's; only its jump is a computed one, for this one use.
    assert "ZEND_VM_LOOP_INTERRUPT_CHECK();" in entry and "goto *kiln_interrupt;" in entry
    assert entry.rstrip().endswith("#define ZEND_VM_LOOP_INTERRUPT() goto zend_interrupt_helper_SPEC;")
    # Every other use of the macros is untouched.
    assert out.count("goto zend_interrupt_helper_SPEC;") == 3


def test_a_vm_without_the_entry_check_only_gets_the_exception_edit():
    out = goto_vm.rewrite(GENERATED.replace("\tZEND_VM_LOOP_INTERRUPT_CHECK();\n", ""))
    assert "kiln_interrupt" not in out and "goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL" not in out


@pytest.mark.parametrize("change, reason", [
    (("goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL\n#define ZEND_VM_CONTINUE", "return 0\n#define ZEND_VM_CONTINUE"),
     "HANDLE_EXCEPTION"),
    (("#define ZEND_VM_LOOP_INTERRUPT()         goto zend_interrupt_helper_SPEC;",
      "#define ZEND_VM_LOOP_INTERRUPT() zend_interrupt_helper_SPEC();"), "ZEND_VM_LOOP_INTERRUPT"),
])
def test_a_generator_writing_something_else_fails_with_the_reason(change, reason):
    with pytest.raises(KilnError, match=reason):
        goto_vm.rewrite(GENERATED.replace(*change))


def test_an_entry_check_written_otherwise_is_refused_not_skipped():
    with pytest.raises(KilnError, match="checks for interrupts before its loop"):
        goto_vm.rewrite(GENERATED.replace("\tZEND_VM_LOOP_INTERRUPT_CHECK();\n\n", "\tZEND_VM_LOOP_INTERRUPT_CHECK();\n\t/* x */\n\n"))


def test_a_rewritten_vm_is_not_rewritten_twice():
    with pytest.raises(KilnError, match="already rewritten"):
        goto_vm.rewrite(goto_vm.rewrite(GENERATED))


def test_the_recipe_turns_the_pass_off_only_for_gotos_executor():
    from kiln import recipe

    php = recipe.language("php")
    goto, seven = php.resolve("8.2.32", "default"), php.resolve("7.4.33", "default")
    assert goto.vm_kind == "GOTO" and FLAG in goto.execute_cflags
    assert seven.vm_kind == "TAILCALL" and FLAG not in seven.execute_cflags and FLAG not in " ".join(seven.cflags)


def executor_command(build: Build) -> tuple[list[str], str]:
    """The compile of Zend/zend_execute.c as make ran it (from the build's make log), without
    libtool and the compiler cache, and with no output or dependency files."""
    log = (build.logs / "make.log").read_text(errors="replace")
    line = next(l for l in log.splitlines() if "-c " in l and l.rstrip().split(" -o ")[0].endswith("Zend/zend_execute.c"))
    words = shlex.split(line)
    words = words[words.index("--mode=compile") + 1:]
    if words[0].endswith("ccache"):
        words = words[1:]
    out = words.index("-o")
    del words[out:out + 2]
    words = [w for w in words if w not in ("-MMD",)]
    for option in ("-MF", "-MT"):
        while option in words:
            at = words.index(option)
            del words[at:at + 2]
    return words, str(build.src)


@pytest.mark.slow
def test_the_fix_irreducible_pass_changes_nothing_in_the_rewritten_goto_executor(tmp_path):
    """The recipe's GOTO variant compiles execute_ex without LLVM's "Fix Irreducible Control
    Flow" pass, which is only safe on a reducible function: compiled with the pass, 8.2.32's
    executor must come out byte for byte as without it."""
    from tests.doit_run import build

    target = Build("php", "8.2.32", "wordpress")
    build(f"php_make:{target.id}")
    words, src = executor_command(target)
    assert "-mllvm" in words and FLAG in words, "the build no longer turns the pass off"
    at = words.index(FLAG)
    with_pass = words[:at - 1] + words[at + 1:]
    env = {**os.environ, **toolchain.current().env}
    for name, command in (("without", words), ("with", with_pass)):
        done = subprocess.run([*command, "-o", str(tmp_path / f"{name}.o")], cwd=src, env=env,
                              capture_output=True, text=True, timeout=3600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "with.o").read_bytes() == (tmp_path / "without.o").read_bytes(), \
        "LLVM's Fix Irreducible Control Flow pass changed the GOTO executor: kiln/goto_vm.py missed a jump into the loop"
    assert re.search(r"goto \*kiln_interrupt;", (target.src / "Zend" / "zend_vm_execute.h").read_text())
