"""The fibers flavour served as PHP is served: kiln.pool's workers (php-cgi.wasm on the Wasmtime
command line, stack switching on) behind Debian's real nginx with the stock php-fpm site, as
tests/test_pool.py runs the wordpress flavour. A page with a small fiber scheduler answers what
native PHP prints; a fatal error inside a fiber, and C recursion past a fiber's C stack, are that request's 500,
and the worker that served it serves the next one; a trap inside a fiber (the engine's own
stack exhausted) costs that request a 502 and the worker, which is replaced."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from doit_run import build
from kiln import native
from kiln.layout import Build
from nginx import Nginx, PoolProcess, served_folder

pytestmark = pytest.mark.slow

BUILD = Build("php", "8.2.32", "fibers")
LIMIT = 10.0   # request_terminate_timeout of the pool under test

# A round-robin scheduler with timers, the shape of an event loop (Revolt, AMPHP): tasks sleep
# by suspending with a wake-up tick, the loop resumes whichever is due.
SCHEDULER = r"""<?php
final class Loop {
    private array $ready = [];
    private array $sleeping = [];
    private int $tick = 0;
    public function spawn(string $name, callable $task): void {
        $this->ready[] = [$name, new Fiber($task)];
    }
    public static function sleep(int $ticks): void { Fiber::suspend($ticks); }
    public function run(): void {
        while ($this->ready || $this->sleeping) {
            if (!$this->ready) {
                $this->tick++;
                foreach ($this->sleeping as $i => [$due, $name, $fiber]) {
                    if ($due <= $this->tick) { $this->ready[] = [$name, $fiber]; unset($this->sleeping[$i]); }
                }
                continue;
            }
            [$name, $fiber] = array_shift($this->ready);
            $ticks = $fiber->isStarted() ? $fiber->resume() : $fiber->start($name);
            if ($fiber->isTerminated()) {
                echo "[$this->tick] $name returned ", $fiber->getReturn(), "\n";
            } else {
                $this->sleeping[] = [$this->tick + $ticks, $name, $fiber];
            }
        }
    }
}
$loop = new Loop();
$rounds = (int) ($_GET["rounds"] ?? $argv[1] ?? 3);
foreach (["fast" => 1, "slow" => 3, "mid" => 2] as $name => $pause) {
    $loop->spawn($name, function (string $name) use ($pause, $rounds) {
        $sum = 0;
        for ($i = 1; $i <= $rounds; $i++) {
            echo "$name step $i\n";
            $sum += $i * $pause;
            Loop::sleep($pause);
        }
        return $sum;
    });
}
$loop->run();
echo "all done\n";
"""

PAGES = {
    "scheduler.php": SCHEDULER,
    # display_errors off, as in production: PHP then answers a fatal error with a 500 itself.
    "fatal.php": '<?php ini_set("display_errors", "0");'
                 ' register_shutdown_function(function () { echo "shutdown ran"; });'
                 ' $f = new Fiber(function () { Fiber::suspend(1);'
                 ' trigger_error("fatal inside a fiber", E_USER_ERROR); });'
                 ' $f->start(); $f->resume(); echo "not reached";',
    # C recursion (array_map calling back) past a 64 KiB fiber C stack: patch 0020's check.
    "deep.php": '<?php ini_set("display_errors", "0"); ini_set("fiber.stack_size", "64K");'
                ' function down(int $n): int { return $n <= 0 ? 0 : array_map("down", [$n - 1])[0] + 1; }'
                ' $f = new Fiber(fn () => down((int) $_GET["depth"])); $f->start(); echo $f->getReturn();',
    # With 4 MiB of C stack the engine's stack of the continuation (max-wasm-stack) runs out
    # first: Wasmtime's guard traps, and the worker process ends.
    "trap.php": '<?php ini_set("fiber.stack_size", "4M");'
                ' function down(int $n): int { return $n <= 0 ? 0 : array_map("down", [$n - 1])[0] + 1; }'
                ' $f = new Fiber(fn () => down(100000)); $f->start(); echo $f->getReturn();',
    "ok.php": '<?php echo (new Fiber(fn () => Fiber::suspend("ok")))->start();',
}


@pytest.fixture(scope="module")
def module() -> Path:
    build(f"php_smoke:{BUILD.id}")
    path = BUILD.module("php-cgi")
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def docroot():
    with served_folder(PAGES, prefix="kiln-fibers-www-") as root:
        yield root


@pytest.fixture(scope="module")
def served(module, docroot):
    pool = PoolProcess(module, docroot, ["--workers", "1", "--max-requests", "500",
                                         "--request-terminate-timeout", str(LIMIT), "--memory", "512"])
    nginx = Nginx(docroot, pool.socket)
    yield pool, nginx
    nginx.stop()
    pool.stop()


def get(nginx, path):
    return requests.get(nginx.url + path, timeout=LIMIT + 30)


def test_a_fiber_scheduler_page_answers_what_native_php_prints(served, docroot):
    pool, nginx = served
    expected = subprocess.run([str(native.binary()), "-n", str(docroot / "scheduler.php"), "4"],
                              capture_output=True, text=True, check=True).stdout
    assert expected.endswith("all done\n") and "[12] slow returned 30" in expected, expected
    for _ in range(3):   # one persistent instance: its parked continuations serve again
        page = get(nginx, "/scheduler.php?rounds=4")
        assert (page.status_code, page.text) == (200, expected), nginx.error_log()


def test_a_fatal_error_inside_a_fiber_is_a_500_and_the_worker_serves_on(served):
    pool, nginx = served
    assert get(nginx, "/ok.php").text == "ok"
    workers = pool.workers()
    page = get(nginx, "/fatal.php")
    assert (page.status_code, page.text) == (500, "shutdown ran"), nginx.error_log()
    assert "PHP Fatal error:  fatal inside a fiber" in nginx.error_log()
    # A bailout inside a fiber is PHP's own error path: the instance and its process live on.
    after = get(nginx, "/ok.php")
    assert (after.status_code, after.text) == (200, "ok")
    assert pool.workers() == workers and "died" not in pool.text()
    assert get(nginx, "/scheduler.php?rounds=2").text.endswith("all done\n")


def test_a_fiber_past_its_c_stack_is_a_500_and_the_worker_serves_on(served):
    pool, nginx = served
    assert get(nginx, "/deep.php?depth=100").text == "100"   # what fits in 64 KiB works
    workers = pool.workers()
    page = get(nginx, "/deep.php?depth=100000")
    assert page.status_code == 500, (page.text, nginx.error_log())
    assert ("PHP Fatal error:  Maximum call stack size of 65536 bytes (fiber.stack_size) reached in a fiber"
            in nginx.error_log())
    # The overflow was caught before the heap below the fiber's stack was written: PHP goes on.
    for _ in range(3):
        assert get(nginx, "/deep.php?depth=100").text == "100"
        assert get(nginx, "/scheduler.php?rounds=2").text.endswith("all done\n")
    assert pool.workers() == workers and "died" not in pool.text()


def test_a_trap_inside_a_fiber_is_a_502_and_the_worker_is_replaced(served):
    pool, nginx = served
    workers = pool.workers()
    page = get(nginx, "/trap.php")
    assert page.status_code == 502, (page.text, nginx.error_log())
    assert "died mid-request" in pool.text()
    deadline = time.monotonic() + 30
    while (len(pool.workers()) != 1 or pool.workers() == workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(pool.workers()) == 1 and pool.workers() != workers
    assert get(nginx, "/scheduler.php?rounds=2").text.endswith("all done\n")
    assert get(nginx, "/deep.php?depth=100").text == "100"
