"""The TAILCALL VM rewrite (kiln/tailcall_vm.py) on text shaped like zend_vm_gen.php's CALL VM.

The real generated files of 7.4 and 8.2 go through it in every TAILCALL build (test_build,
test_conformance); here each edit and each refusal is checked on its own.
"""
import pytest

from kiln import tailcall_vm
from kiln.errors import KilnError

CALL_VM = """\
#include "prologue.h"

#ifdef ZEND_VM_FP_GLOBAL_REG
# define ZEND_OPCODE_HANDLER_ARGS void
# define ZEND_OPCODE_HANDLER_ARGS_PASSTHRU
#else
# define ZEND_OPCODE_HANDLER_ARGS zend_execute_data *execute_data
#endif
#define ZEND_VM_CONTINUE()      return  0
#define ZEND_VM_DISPATCH(opcode, opline) ZEND_VM_TAIL_CALL(((opcode_handler_t)zend_vm_get_opcode_handler(opcode, opline))(ZEND_OPCODE_HANDLER_ARGS_PASSTHRU));

static ZEND_OPCODE_HANDLER_RET ZEND_FASTCALL zend_interrupt_helper_SPEC(ZEND_OPCODE_HANDLER_ARGS);
static zend_never_inline ZEND_OPCODE_HANDLER_RET ZEND_FASTCALL zend_add_helper_SPEC(zval *op_1, zval *op_2 ZEND_OPCODE_HANDLER_ARGS_DC)
{
	USE_OPLINE
	add_function(EX_VAR(opline->result.var), op_1, op_2);
	ZEND_VM_NEXT_OPCODE_CHECK_EXCEPTION();
}

static ZEND_OPCODE_HANDLER_RET ZEND_FASTCALL ZEND_ADD_SPEC_CV_CV_HANDLER(ZEND_OPCODE_HANDLER_ARGS)
{
	USE_OPLINE
	if (fast) {
		ZEND_VM_NEXT_OPCODE();
	}
	ZEND_VM_TAIL_CALL(zend_add_helper_SPEC(EX_VAR(opline->op1.var), RT_CONSTANT(opline, opline->op2) ZEND_OPCODE_HANDLER_ARGS_PASSTHRU_CC));
}

ZEND_API void execute_ex(zend_execute_data *ex)
{
	DCL_OPLINE
	while (1) {
		if (((opcode_handler_t)OPLINE->handler)(ZEND_OPCODE_HANDLER_ARGS_PASSTHRU) != 0) {
			return;
		}
	}
}

ZEND_API int ZEND_FASTCALL zend_vm_call_opcode_handler(zend_execute_data* ex)
{
	return 0;
}
"""


def test_handlers_pass_execute_data_and_opline_and_tail_call_the_next():
    out = tailcall_vm.rewrite(CALL_VM)
    assert "#ifdef ZEND_VM_FP_GLOBAL_REG" not in out and tailcall_vm.MARKER in out
    assert "#define ZEND_OPCODE_HANDLER_ARGS zend_execute_data *execute_data, const zend_op *opline" in out
    assert "#define ZEND_VM_TAIL_CALL(call) do { __attribute__((musttail)) return call; } while (0)" in out
    assert "#define ZEND_VM_DISPATCH(opcode, opline)" in out  # the block's last line is ours too
    # The dispatch loop is gone: execute_ex starts the first handler, which runs the rest.
    execute_ex = out[out.index("ZEND_API void execute_ex"):out.index("ZEND_API int ZEND_FASTCALL")]
    assert "while" not in execute_ex and "((opcode_handler_t)OPLINE->handler)" in execute_ex
    assert "zend_error_noreturn" in out[out.index("zend_vm_call_opcode_handler"):]
    assert out.startswith('#include "prologue.h"\n')  # nothing outside the edits moves


def test_a_helper_with_arguments_reads_them_from_its_struct_filled_at_each_call():
    out = tailcall_vm.rewrite(CALL_VM)
    assert "static struct { zval *op_1; zval *op_2; } zend_add_helper_SPEC_args;" in out
    assert ("zend_add_helper_SPEC(ZEND_OPCODE_HANDLER_ARGS)\n{\n"
            "\tzval *op_1 = zend_add_helper_SPEC_args.op_1;\n"
            "\tzval *op_2 = zend_add_helper_SPEC_args.op_2;\n\tUSE_OPLINE\n") in out
    # Nested parentheses and commas inside an argument stay whole.
    assert ("do { zend_add_helper_SPEC_args.op_1 = EX_VAR(opline->op1.var); "
            "zend_add_helper_SPEC_args.op_2 = RT_CONSTANT(opline, opline->op2); "
            "ZEND_VM_TAIL_CALL(zend_add_helper_SPEC(ZEND_OPCODE_HANDLER_ARGS_PASSTHRU)); } while (0);") in out
    assert not [line for line in out.splitlines()
                if "ZEND_OPCODE_HANDLER_ARGS_DC" in line and not line.startswith("#define")]


@pytest.mark.parametrize("change, message", [
    (("#ifdef ZEND_VM_FP_GLOBAL_REG\n", "#if 1\n"), "dispatch macro block"),
    (("ZEND_API void execute_ex", "ZEND_API void execute_ex_renamed"), "expected one execute_ex"),
    (("ZEND_VM_TAIL_CALL(zend_add_helper_SPEC(", "return (zend_add_helper_SPEC("), "is used in a way"),
    (("RT_CONSTANT(opline, opline->op2) ZEND", "1, 2 ZEND"), "called with 3 arguments"),
    (("zval *op_1, zval *op_2 ZEND_OPCODE_HANDLER_ARGS_DC", "ZEND_OPCODE_HANDLER_ARGS"), "no VM helper with arguments"),
])
def test_a_generator_output_of_another_shape_is_refused_with_the_reason(change, message):
    source = CALL_VM.replace(*change)
    assert source != CALL_VM
    with pytest.raises(KilnError, match=message):
        tailcall_vm.rewrite(source)


def test_rewriting_twice_is_refused():
    with pytest.raises(KilnError, match="already a tail-calling VM"):
        tailcall_vm.rewrite(tailcall_vm.rewrite(CALL_VM))


def test_the_command_rewrites_in_place_and_fails_in_one_line(tmp_path, capsys):
    path = tmp_path / "zend_vm_execute.h"
    path.write_text(CALL_VM)
    assert tailcall_vm.main([str(path)]) == 0
    assert tailcall_vm.MARKER in path.read_text()
    assert tailcall_vm.main([str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kiln: ") and "\n" not in err
    assert tailcall_vm.MARKER in path.read_text()  # a refusal leaves the file as it was


def test_the_tool_digest_covers_the_rewrite_and_its_templates():
    tool = tailcall_vm.tool()
    assert len(tool.digest) == 64 and tool.python and tool.root
