/* Proof, outside PHP, that kiln_fiber.wat gives C real coroutines on wasm32-wasi: two coroutines
 * ping-pong, a longjmp (a WebAssembly exception under -mllvm -wasm-enable-sjlj) thrown and
 * caught inside a coroutine across a suspend, deep recursion inside one, a coroutine resuming
 * another, a thousand alive at once, a hundred thousand one after the other (finished
 * contexts are parked and reused: see kiln_fiber.wat), and the cost of a switch.
 *
 * Built with Kiln's toolchain, merged with kiln_fiber.wat by binaryen's wasm-merge, run by the
 * Wasmtime command line with stack switching on: tests/test_fibers.py; the timing is
 * bench/fiber_switch.py's. Usage: proof [DEPTH [PAIRS [MANY [LIFETIME]]]]. */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* kiln_fiber.wat's exports, merged in under the module name "kiln_fiber". */
#define SWITCH(name) __attribute__((import_module("kiln_fiber"), import_name(#name)))
SWITCH(new) void switch_new(uint32_t slot);
SWITCH(drop) void switch_drop(uint32_t slot);
SWITCH(resume) int switch_resume(uint32_t slot, void *start_sp);
SWITCH(suspend) void switch_suspend(int finished);

/* What kiln_fiber.wat imports from this module: the C stack pointer, and where a coroutine starts. */
__attribute__((export_name("kiln_fiber_get_sp"))) void *kiln_fiber_get_sp(void)
{
	void *sp;
	__asm__ volatile("global.get __stack_pointer\n\tlocal.set %0" : "=r"(sp));
	return sp;
}

__attribute__((export_name("kiln_fiber_set_sp"))) void kiln_fiber_set_sp(void *sp)
{
	__asm__ volatile("local.get %0\n\tglobal.set __stack_pointer" : : "r"(sp));
}

typedef struct coro coro;
typedef long (*coro_fn)(long value);
struct coro {
	uint32_t slot;
	int started, done;
	char *stack;
	size_t stack_size;
	coro_fn fn;
};

static uint32_t next_slot;
static uint32_t *parked;    /* slots whose context finished: reused before cont.new */
static size_t parked_count, parked_size;
static coro *starting;      /* the coroutine kiln_fiber_entry starts */
static long passed;         /* the value travelling with a switch */

static __attribute__((noinline)) void run(void)
{
	coro *self = starting;
	passed = self->fn(passed);
}

/* Never returns: a finished coroutine parks, and its slot's next resume runs the next one.
 * Nothing of its own on the C stack, whose region changes under it at each reuse. */
__attribute__((export_name("kiln_fiber_entry"))) void kiln_fiber_entry(void)
{
	for (;;) {
		run();
		switch_suspend(1);
	}
}

static coro *coro_create(coro_fn fn, size_t stack_size)
{
	coro *c = calloc(1, sizeof *c);
	if (parked_count) {
		c->slot = parked[--parked_count];
	} else {
		c->slot = next_slot++;
		switch_new(c->slot);
	}
	c->fn = fn;
	c->stack_size = stack_size;
	c->stack = malloc(stack_size);
	return c;
}

/* A finished coroutine's slot goes back to the pool; an unfinished one's is dropped (its
 * continuation is the engine's to free, which Wasmtime 49 does only with the instance). */
static void coro_free(coro *c)
{
	if (c->done || !c->started) {
		if (parked_count == parked_size) {
			parked_size = parked_size ? 2 * parked_size : 64;
			parked = realloc(parked, parked_size * sizeof *parked);
		}
		parked[parked_count++] = c->slot;
	} else {
		switch_drop(c->slot);
	}
	free(c->stack);
	free(c);
}

static long coro_resume(coro *c, long value)
{
	void *top = NULL;
	if (!c->started) {
		c->started = 1;
		starting = c;
		/* its own region of the C stack, 16-byte aligned at the top (the stack grows down) */
		top = (void *) (((uintptr_t) c->stack + c->stack_size) & ~(uintptr_t) 15);
	}
	passed = value;
	c->done = switch_resume(c->slot, top);
	return passed;
}

static long coro_suspend(long value)
{
	passed = value;
	switch_suspend(0);
	return passed;
}

/* ping-pong: each coroutine's locals live on its own C stack, checked after every switch */
static long player(long v)
{
	char name[16];
	snprintf(name, sizeof name, "%s", v % 2 ? "pong" : "ping");
	for (int i = 0; i < 3; i++) {
		printf("%s %ld\n", name, v);
		v = coro_suspend(v + 1);
	}
	return -1;
}

static jmp_buf jump;
static void thrower(int depth)
{
	volatile char pad[128];
	pad[0] = (char) depth;
	if (depth == 0) longjmp(jump, 42);
	thrower(depth - 1);
	(void) pad[0];
}
static long jumper(long v)
{
	int r = setjmp(jump);
	if (r == 0) {
		coro_suspend(1);   /* suspended between setjmp and longjmp */
		thrower(50);
		return -1;
	}
	return r;
}

static long recurse(long n)
{
	volatile char pad[200];
	pad[0] = (char) n;
	if (n == 0) return coro_suspend(0);
	return recurse(n - 1) + 1 + (pad[0] & 0);
}

static long doubler(long v) { return coro_suspend(v * 2) + 1; }

static long outer(long v)
{
	coro *inner = coro_create(doubler, 64 * 1024);
	long a = coro_resume(inner, 10);   /* inner suspends back here, not to main */
	long b = coro_suspend(a);          /* outer suspends to main */
	long c = coro_resume(inner, b);    /* inner finishes */
	return c + inner->done * 1000;
}

static long counter(long v)
{
	for (;;) v = coro_suspend(v + 1);
	return 0;
}

int main(int argc, char **argv)
{
	long depth = argc > 1 ? atol(argv[1]) : 10000;
	long pairs = argc > 2 ? atol(argv[2]) : 100000;
	long many = argc > 3 ? atol(argv[3]) : 1000;
	long lifetime = argc > 4 ? atol(argv[4]) : 100000;

	coro *ping = coro_create(player, 64 * 1024), *pong = coro_create(player, 64 * 1024);
	long v = coro_resume(ping, 0);
	while (!ping->done || !pong->done) {
		if (!pong->done) v = coro_resume(pong, v);
		if (!ping->done) v = coro_resume(ping, v);
	}
	printf("ping-pong done: %ld\n", v);

	coro *j = coro_create(jumper, 64 * 1024);
	long s = coro_resume(j, 0);
	long r = coro_resume(j, 0);
	printf("longjmp in a coroutine: suspended with %ld, caught %ld, done %d\n", s, r, j->done);

	coro *d = coro_create(recurse, (size_t) depth * 256 + 65536);
	coro_resume(d, depth);
	r = coro_resume(d, 0);
	printf("deep recursion: %ld frames, answer %ld, done %d\n", depth, r, d->done);

	coro *o = coro_create(outer, 64 * 1024);
	long x = coro_resume(o, 0);
	long y = coro_resume(o, 5);
	printf("nested: outer suspended with %ld, ended with %ld, done %d\n", x, y, o->done);

	coro **alive = calloc(many, sizeof *alive);
	long long sum = 0;
	for (long i = 0; i < many; i++) { alive[i] = coro_create(doubler, 16 * 1024); sum += coro_resume(alive[i], i); }
	for (long i = 0; i < many; i++) { sum += coro_resume(alive[i], i); sum += alive[i]->done ? 0 : 1000000000LL; }
	printf("%ld alive at once: sum %lld\n", many, sum);
	for (long i = 0; i < many; i++) coro_free(alive[i]);

	/* more coroutines over the process's life than Wasmtime has continuations to give */
	sum = 0;
	for (long i = 0; i < lifetime; i++) {
		coro *c = coro_create(doubler, 16 * 1024);
		sum += coro_resume(c, i);
		sum += coro_resume(c, i);
		coro_free(c);
	}
	printf("%ld one after the other: sum %lld, %u continuations made\n", lifetime, sum, next_slot);

	coro *c = coro_create(counter, 64 * 1024);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	v = 0;
	for (long i = 0; i < pairs; i++) v = coro_resume(c, v);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double) pairs;
	printf("switch: %ld resume+suspend pairs, %.1f ns per pair\n", v, ns);
	return 0;
}
