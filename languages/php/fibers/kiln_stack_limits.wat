;; The limits of binaryen's --stack-check for the fibers variant (the recipe runs the pass over the
;; linked module, post_link): every write of the C stack pointer (__stack_pointer) is checked
;; against a base and a limit, and one above the base or below the limit calls the handler the
;; pass imports (patch 0020's kiln_fiber_stack_overflow, exported by the C module itself).
;;
;; The pass makes both globals 0, which every write fails, and reaches them only through the
;; function it exports, __set_stack_limits. This module is merged beside kiln_fiber.wat
;; (kiln/wasm_merge.py): its start function lifts the limits before any C code runs (base
;; UINTPTR_MAX, limit 0: no check, the main context's C stack as without the pass), and `set` is
;; what the C side calls at each fiber switch (the running fiber's own stack region).
(module
  (import "env" "__set_stack_limits" (func $set_limits (param i32 i32)))

  (func $unlimited (call $set_limits (i32.const -1) (i32.const 0)))
  (start $unlimited)

  (func (export "set") (param $base i32) (param $limit i32)
    (call $set_limits (local.get $base) (local.get $limit)))
)
