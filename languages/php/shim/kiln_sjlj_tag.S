/*
 * kiln_sjlj_tag.S - defines the WebAssembly exception tag `__c_longjmp`.
 * Part of the Kiln project.
 *
 * With `-mllvm -wasm-enable-sjlj`, clang lowers setjmp/longjmp to wasm
 * exception handling: longjmp throws, and setjmp sites catch, an exception
 * with the tag `__c_longjmp`, whose single i32 parameter points at the
 * longjmp arguments (wasm32).  Clang only *references* the tag; the
 * runtime is expected to define it once, and zig's wasi-libc does not.
 * Assemble with exception handling enabled (-mcpu=...+exception_handling).
 */
	.globl	__c_longjmp
	.tagtype	__c_longjmp i32
__c_longjmp:
