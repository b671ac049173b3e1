"""Make PHP's generated GOTO VM a reducible control-flow graph ([[vm_kind]] GOTO).

    python -m kiln.goto_vm Zend/zend_vm_execute.h

WebAssembly has structured control flow only, so LLVM's WebAssembly back end runs "Fix
Irreducible Control Flow" on every function. On the GOTO VM's execute_ex, one function of
~18,000 blocks, that pass alone took 70-90% of a 4-15 CPU-minute compile and a 10.9 GiB clang
(docs/benchmarks.md), whether it found anything or not. What it found were two kinds of jump
into the dispatch loop other than through the dispatch itself, each giving a loop two entries:

1. HANDLE_EXCEPTION() and HANDLE_EXCEPTION_LEAVE() jump straight to the
   ZEND_HANDLE_EXCEPTION handler's label. They now load the opline and dispatch, as the CALL
   VM's do: a user frame's opline is EG(exception_op) once an exception is thrown
   (zend_throw_exception_internal), whose handler is that label. A rare path, one indirect jump.
2. execute_ex's entry checks for a pending interrupt and jumps straight to the interrupt helper
   inside the loop. It now jumps there through the dispatch: a computed goto to the helper's
   address, kept in a volatile so that LLVM cannot fold it back into a direct jump.

With both gone the function is reducible and the pass changes nothing (8.2.32's object is
byte-identical with and without it: tests/test_goto_vm.py), so the recipe's GOTO variant turns
it off (-wasm-disable-fix-irreducible-control-flow-pass): execute_ex compiles in ~30 s with
~0.4 GiB. Each edit is checked: a release whose generator writes something else fails here
with the reason instead of compiling into a wrong VM.
"""
from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

from . import vm_edit
from .errors import KilnError

MARKER = "/* kiln: GOTO VM made reducible (kiln/goto_vm.py) */\n"
HANDLE_EXCEPTION = re.compile(
    r"^#define (HANDLE_EXCEPTION(?:_LEAVE)?)\(\) ZEND_ASSERT\(EG\(exception\)\); "
    r"goto ZEND_HANDLE_EXCEPTION_SPEC_LABEL$", re.M)
# execute_ex's entry: the opline loaded, an interrupt check, then the loop.
ENTRY_CHECK = re.compile(r"^(\tLOAD_OPLINE\(\);\n)(\tZEND_VM_LOOP_INTERRUPT_CHECK\(\);\n)(\n\twhile \(1\) \{)", re.M)
LOOP_INTERRUPT = re.compile(r"^#define ZEND_VM_LOOP_INTERRUPT\(\)[ \t]+(goto zend_interrupt_helper_SPEC;)$", re.M)
# The check is zend_execute.c's macro (its test of EG(vm_interrupt) differs between releases);
# only the jump it makes is redefined around this one use, then put back.
THROUGH_DISPATCH = ("#undef ZEND_VM_LOOP_INTERRUPT\n"
                    "/* through the dispatch, not straight into the loop (kiln/goto_vm.py) */\n"
                    "#define ZEND_VM_LOOP_INTERRUPT() do { \\\n"
                    "\t\tvoid *volatile kiln_interrupt = &&zend_interrupt_helper_SPEC; \\\n"
                    "\t\tgoto *kiln_interrupt; \\\n"
                    "\t} while (0)\n")
RESTORE = "#undef ZEND_VM_LOOP_INTERRUPT\n#define ZEND_VM_LOOP_INTERRUPT() {jump}\n"


Tool = vm_edit.Tool


@functools.cache
def tool() -> Tool:
    return vm_edit.tool([Path(__file__)])


def rewrite(source: str) -> str:
    """The reducible GOTO VM for one GOTO-kind zend_vm_execute.h."""
    if MARKER in source:
        raise KilnError("zend_vm_execute.h is already rewritten: regenerate it with "
                        "zend_vm_gen.php --with-vm-kind=GOTO first")
    names = HANDLE_EXCEPTION.findall(source)
    if sorted(names) != ["HANDLE_EXCEPTION", "HANDLE_EXCEPTION_LEAVE"]:
        raise KilnError("zend_vm_execute.h: the GOTO VM's HANDLE_EXCEPTION()/HANDLE_EXCEPTION_LEAVE() "
                        f"definitions are not the expected jumps to ZEND_HANDLE_EXCEPTION (found {names})")
    source = HANDLE_EXCEPTION.sub(
        lambda m: f"#define {m.group(1)}() ZEND_ASSERT(EG(exception)); LOAD_OPLINE(); "
                  + ("ZEND_VM_LEAVE()" if m.group(1).endswith("LEAVE") else "ZEND_VM_CONTINUE()"),
        source)
    # A release whose execute_ex has no interrupt check before its loop has nothing to fix there;
    # one whose check is written otherwise is refused (the pass would be off with it unfixed).
    entries = len(ENTRY_CHECK.findall(source))
    start = source.find("ZEND_API void execute_ex(zend_execute_data *ex)")
    prologue = source[start:source.find("\twhile (1) {", start)] if start >= 0 else ""
    if entries == 0 and "ZEND_VM_LOOP_INTERRUPT_CHECK()" in prologue:
        raise KilnError("zend_vm_execute.h: execute_ex checks for interrupts before its loop, but not as "
                        "`LOAD_OPLINE(); ZEND_VM_LOOP_INTERRUPT_CHECK();` then the loop: not a GOTO VM this rewrite knows")
    if entries > 1:
        raise KilnError("zend_vm_execute.h: more than one `LOAD_OPLINE(); ZEND_VM_LOOP_INTERRUPT_CHECK();` "
                        "before a loop: not the GOTO VM's execute_ex this rewrite knows")
    if entries == 1:
        jump = LOOP_INTERRUPT.findall(source)
        if len(jump) != 1:
            raise KilnError("zend_vm_execute.h: ZEND_VM_LOOP_INTERRUPT() is not the GOTO VM's "
                            "`goto zend_interrupt_helper_SPEC;`")
        source = ENTRY_CHECK.sub(lambda m: m.group(1) + THROUGH_DISPATCH + m.group(2)
                                 + RESTORE.format(jump=jump[0]) + m.group(3), source)
    return MARKER + source


def main(argv: list[str]) -> int:
    return vm_edit.main(argv, "kiln.goto_vm", rewrite)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
