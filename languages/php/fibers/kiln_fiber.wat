;; Kiln's fiber switch: coroutines on the WebAssembly stack-switching proposal
;; (cont.new / resume / suspend), for C code that cannot emit these instructions itself.
;;
;; wasm-merge (the pinned binaryen, node_modules/.bin; kiln/wasm_merge.py) joins this module,
;; under its file name, to a linked C module named "env", which imports the four exports below
;; from "kiln_fiber" and exports what this module imports. The result runs only where stack
;; switching is on: the Wasmtime command line with -W stack-switching=y (Wasmtime 49).
;;
;; The model is asymmetric: `resume` runs a context on top of the caller's, `suspend` goes back
;; to whoever resumed it. Values travel through the C side's own memory, not through here.
;; A context's continuation lives in slot `slot` of a table; the C side hands out slots.
;;
;; Wasmtime 49 frees no continuation before the instance ends, even a finished one, and each
;; takes two memory mappings: cont.new fails ("Cannot allocate memory") after ~32,000 in a
;; process (vm.max_map_count 65530). So a finished context does not return: its entry parks
;; it (`suspend` with finished = 1), and the C side starts the next context in the same slot
;; by resuming it with a new `start_sp`. cont.new runs only while no parked slot is free.
;;
;; The C shadow stack (the global clang calls __stack_pointer, read and written through the C
;; module's kiln_fiber_get_sp/kiln_fiber_set_sp since wasm-ld does not export it) is per
;; context too: a first resume starts the context's C code at `start_sp` (the top of its own
;; region of linear memory); each switch puts the switching side's value back when control
;; returns to it.
(module
  (import "env" "memory" (memory 0))
  (import "env" "kiln_fiber_entry" (func $entry))
  (import "env" "kiln_fiber_get_sp" (func $get_sp (result i32)))
  (import "env" "kiln_fiber_set_sp" (func $set_sp (param i32)))

  (type $fn (func))
  (type $cont (cont $fn))
  (tag $yield (param i32))   ;; 0: suspended, 1: finished (parked, reusable)
  (table $contexts 0 (ref null $cont))

  (func $start (type $fn) (call $entry))
  (elem declare func $start)

  ;; A new context in `slot`, ready to run kiln_fiber_entry on its first resume.
  (func (export "new") (param $slot i32)
    (local $size i32)
    (local.set $size (table.size $contexts))
    (if (i32.ge_u (local.get $slot) (local.get $size))
      (then
        ;; at least double: growing one slot at a time would copy the table each time
        (if (i32.eq (table.grow $contexts (ref.null $cont)
                      (i32.add (i32.sub (local.get $slot) (local.get $size))
                               (i32.add (local.get $size) (i32.const 16))))
                    (i32.const -1))
          (then unreachable))))
    (table.set $contexts (local.get $slot) (cont.new $cont (ref.func $start))))

  ;; Forget the context in `slot` (finished, or never to be resumed again).
  (func (export "drop") (param $slot i32)
    (table.set $contexts (local.get $slot) (ref.null $cont)))

  ;; Run the context in `slot` until it suspends (answer 0) or finishes (answer 1: parked by
  ;; its entry, or its entry returned and the slot is empty). A non-zero `start_sp` (a new
  ;; context, or a parked one reused) is where its C stack starts.
  (func (export "resume") (param $slot i32) (param $start_sp i32) (result i32)
    (local $saved_sp i32)
    (local $suspended (ref null $cont))
    (local $finished i32)
    (local.set $saved_sp (call $get_sp))
    (if (local.get $start_sp) (then (call $set_sp (local.get $start_sp))))
    (block $suspended (result i32 (ref $cont))
      (resume $cont (on $yield $suspended) (table.get $contexts (local.get $slot)))
      (table.set $contexts (local.get $slot) (ref.null $cont))
      (call $set_sp (local.get $saved_sp))
      (return (i32.const 1)))
    ;; suspended: keep what is left of it for the next resume
    (local.set $suspended)
    (local.set $finished)
    (table.set $contexts (local.get $slot) (local.get $suspended))
    (call $set_sp (local.get $saved_sp))
    (local.get $finished))

  ;; Go back to the context that resumed this one; returns when something resumes it again.
  ;; A finished context (`finished` = 1) keeps the C stack pointer its next resume gives it.
  (func (export "suspend") (param $finished i32)
    (local $saved_sp i32)
    (local.set $saved_sp (call $get_sp))
    (suspend $yield (local.get $finished))
    (if (i32.eqz (local.get $finished)) (then (call $set_sp (local.get $saved_sp)))))
)
