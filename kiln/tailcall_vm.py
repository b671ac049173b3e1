"""Turn PHP's generated CALL VM into a tail-calling one ([[vm_kind]] TAILCALL).

    python -m kiln.tailcall_vm Zend/zend_vm_execute.h

The input is what `zend_vm_gen.php --with-vm-kind=CALL` writes; the file is rewritten in place
(atomically). Three edits, each checked, so a release whose generator writes something else
fails here with the reason instead of compiling into a wrong VM:

1. the generator's block of dispatch macros is replaced by ours (templates/tailcall-vm/):
   handlers take (execute_data, opline) and end by tail-calling the next handler;
2. execute_ex, the dispatch loop, becomes one call of the first handler; the JIT's
   single-handler entry point becomes an error (wasm builds have no JIT);
3. helpers that take extra arguments (musttail needs the callee to take exactly the caller's
   arguments) get them from a static struct each, which every call site fills first.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import sys
from pathlib import Path

from . import settings, templating, vm_edit
from .errors import KilnError

BLOCK_START = "#ifdef ZEND_VM_FP_GLOBAL_REG\n# define ZEND_OPCODE_HANDLER_ARGS void\n"
BLOCK_END = re.compile(r"^#define ZEND_VM_DISPATCH\(opcode, opline\) .*\n", re.M)
EXECUTE_EX = re.compile(r"^ZEND_API void execute_ex\(zend_execute_data \*ex\)\n\{\n.*?^\}\n", re.M | re.S)
CALL_OPCODE_HANDLER = re.compile(
    r"^ZEND_API int ZEND_FASTCALL zend_vm_call_opcode_handler\(zend_execute_data\* ex\)\n\{\n.*?^\}\n",
    re.M | re.S)
# A helper with arguments before the usual ones: a declaration, or a definition's first two lines.
HELPER_WITH_ARGS = re.compile(
    r"^(?P<head>static [^\n(]*ZEND_FASTCALL )(?P<name>\w+_helper\w*)"
    r"\((?P<params>[^()\n]+) ZEND_OPCODE_HANDLER_ARGS_DC\)(?:(?P<declaration>;)\n|\n\{\n)", re.M)
# Names the macro block (re)defines; 7.4's zend_execute.c defines some of them first.
REDEFINED = ("OPLINE", "DCL_OPLINE", "USE_OPLINE", "LOAD_OPLINE", "LOAD_OPLINE_EX", "LOAD_NEXT_OPLINE",
             "SAVE_OPLINE", "SAVE_OPLINE_EX", "HANDLE_EXCEPTION", "HANDLE_EXCEPTION_LEAVE")
MARKER = "Kiln's tail-calling VM"


@dataclasses.dataclass(frozen=True)
class Param:
    declaration: str  # "zval *op_1"
    name: str         # "op_1"


@dataclasses.dataclass(frozen=True)
class Helper:
    name: str
    params: tuple[Param, ...]


Tool = vm_edit.Tool


@functools.cache  # read for every build's script and cache key; the files do not change mid-run
def tool() -> Tool:
    return vm_edit.tool([Path(__file__), *sorted((settings.TEMPLATES / "tailcall-vm").glob("*.j2"))])


def rewrite(source: str) -> str:
    """The tail-calling VM for one CALL-kind zend_vm_execute.h."""
    if MARKER in source:
        raise KilnError("zend_vm_execute.h is already a tail-calling VM: regenerate it with "
                        "zend_vm_gen.php --with-vm-kind=CALL first")
    helpers = _helpers(source)
    source = _replace_block(source, helpers)
    source = _replace_one(source, EXECUTE_EX, "execute_ex", templating.render("tailcall-vm/execute_ex.c.j2"))
    source = _replace_one(source, CALL_OPCODE_HANDLER, "zend_vm_call_opcode_handler",
                          templating.render("tailcall-vm/call_opcode_handler.c.j2"))
    source = _helper_definitions(source, helpers)
    for helper in helpers:
        source = _helper_calls(source, helper)
    return source


def _helpers(source: str) -> list[Helper]:
    found: dict[str, Helper] = {}
    for match in HELPER_WITH_ARGS.finditer(source):
        params = []
        for declaration in match["params"].split(","):
            declaration = declaration.strip()
            name = re.search(r"(\w+)$", declaration)
            if name is None:
                raise KilnError(f"zend_vm_execute.h: cannot read parameter {declaration!r} of {match['name']}")
            params.append(Param(declaration, name[1]))
        found[match["name"]] = Helper(match["name"], tuple(params))
    if not found:
        raise KilnError("zend_vm_execute.h: no VM helper with arguments found: is this the CALL VM?")
    return list(found.values())


def _replace_block(source: str, helpers: list[Helper]) -> str:
    start = source.find(BLOCK_START)
    end = BLOCK_END.search(source, start) if start >= 0 else None
    if end is None or source.count(BLOCK_START) != 1:
        raise KilnError("zend_vm_execute.h: the generator's dispatch macro block is not where the "
                        "tail-call rewrite expects it (a release with another VM generator?)")
    prelude = templating.render("tailcall-vm/prelude.h.j2", undefined=REDEFINED, helpers=helpers)
    return source[:start] + prelude + source[end.end():]


def _replace_one(source: str, pattern: re.Pattern, what: str, replacement: str) -> str:
    matches = list(pattern.finditer(source))
    if len(matches) != 1:
        raise KilnError(f"zend_vm_execute.h: expected one {what} function, found {len(matches)}")
    return source[:matches[0].start()] + replacement + source[matches[0].end():]


def _helper_definitions(source: str, helpers: list[Helper]) -> str:
    """Each helper takes the handlers' arguments and starts by reading its own from its struct."""
    by_name = {h.name: h for h in helpers}

    def signature(match: re.Match) -> str:
        line = f"{match['head']}{match['name']}(ZEND_OPCODE_HANDLER_ARGS)"
        if match["declaration"]:
            return line + ";\n"
        helper = by_name[match["name"]]
        loads = "".join(f"\t{p.declaration} = {helper.name}_args.{p.name};\n" for p in helper.params)
        return line + "\n{\n" + loads

    return HELPER_WITH_ARGS.sub(signature, source)


def _helper_calls(source: str, helper: Helper) -> str:
    """ZEND_VM_TAIL_CALL(h(a, b ZEND_OPCODE_HANDLER_ARGS_PASSTHRU_CC)); -> fill h's struct, then
    tail-call h with the handlers' arguments. Any other use of h is an error."""
    call = f"ZEND_VM_TAIL_CALL({helper.name}("
    out, position, calls = [], 0, 0
    while (start := source.find(call, position)) >= 0:
        args_start = start + len(call)
        args_end = _closing_paren(source, args_start)
        args = source[args_start:args_end]
        tail = " ZEND_OPCODE_HANDLER_ARGS_PASSTHRU_CC"
        if not args.endswith(tail) or not source.startswith("));", args_end):
            raise KilnError(f"zend_vm_execute.h: unexpected call of {helper.name}: {source[start:args_end + 3]!r}")
        values = _split_args(args[:-len(tail)])
        if len(values) != len(helper.params):
            raise KilnError(f"zend_vm_execute.h: {helper.name} called with {len(values)} arguments, "
                            f"takes {len(helper.params)}")
        stores = " ".join(f"{helper.name}_args.{p.name} = {v};" for p, v in zip(helper.params, values))
        out.append(source[position:start])
        out.append(f"do {{ {stores} ZEND_VM_TAIL_CALL({helper.name}(ZEND_OPCODE_HANDLER_ARGS_PASSTHRU)); }} while (0);")
        position = args_end + 3
        calls += 1
    out.append(source[position:])
    result = "".join(out)
    uses = len(re.findall(rf"\b{helper.name}\(", result))
    # What remains: the rewritten calls, the definition and at most one declaration.
    if calls == 0 or uses > calls + 2:
        raise KilnError(f"zend_vm_execute.h: {helper.name} is used in a way the tail-call rewrite "
                        f"does not know ({calls} tail calls, {uses} uses)")
    return result


def _closing_paren(text: str, start: int) -> int:
    """The index of the parenthesis closing the one just before `start`."""
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    raise KilnError("zend_vm_execute.h: unbalanced parentheses in a helper call")


def _split_args(text: str) -> list[str]:
    args, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    args.append("".join(current).strip())
    return args


def main(argv: list[str]) -> int:
    return vm_edit.main(argv, "kiln.tailcall_vm", rewrite)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
