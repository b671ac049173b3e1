<?php
// Real fibers (the +fibers flavour): each part prints what native PHP prints (fibers.expected
// is native php8.2 -n's output for this script).

echo "-- start, suspend, resume\n";
$f = new Fiber(function (string $x): string {
    $y = Fiber::suspend($x . " suspended");
    echo "resumed with $y\n";
    $z = Fiber::suspend("second");
    return "returned $z";
});
var_dump($f->start("start"));
var_dump($f->resume("one"));
var_dump($f->isSuspended());
$f->resume("two");
var_dump($f->isTerminated(), $f->getReturn());

echo "-- throw into a fiber\n";
$f = new Fiber(function () {
    try {
        Fiber::suspend(1);
    } catch (RuntimeException $e) {
        echo "caught inside: ", $e->getMessage(), "\n";
        Fiber::suspend(2);
    }
});
$f->start();
var_dump($f->throw(new RuntimeException("thrown in")));

echo "-- exception out of a fiber\n";
$f = new Fiber(function () { Fiber::suspend(); throw new LogicException("thrown out"); });
$f->start();
try {
    $f->resume();
} catch (LogicException $e) {
    echo "caught outside: ", $e->getMessage(), "\n";
}

echo "-- fibers inside fibers\n";
$outer = new Fiber(function () {
    $inner = new Fiber(function () {
        echo "inner 1\n";
        Fiber::suspend("from inner");
        echo "inner 2\n";
    });
    $v = $inner->start();
    echo "outer got: $v\n";
    Fiber::suspend("from outer");
    $inner->resume();
    echo "outer end\n";
});
echo "main got: ", $outer->start(), "\n";
$outer->resume();

echo "-- generators inside fibers\n";
function numbers() {
    for ($i = 1; $i <= 3; $i++) {
        $sent = yield $i;
        Fiber::suspend("gen $i sent " . var_export($sent, true));
    }
}
$f = new Fiber(function () {
    $g = numbers();
    foreach ($g as $n) {
        echo "generated $n\n";
    }
});
$out = [$f->start()];
while (!$f->isTerminated()) {
    $out[] = $f->resume();
}
echo implode(", ", array_filter($out)), "\n";

echo "-- destructors and finally of a suspended fiber\n";
class Noisy { public function __construct(public string $name) {} public function __destruct() { echo "destruct {$this->name}\n"; } }
$f = new Fiber(function () {
    $n = new Noisy("local");
    try {
        Fiber::suspend();
        echo "never\n";
    } finally {
        echo "finally ran\n";
    }
});
$f->start();
unset($f);
gc_collect_cycles();
echo "after unset\n";

echo "-- Fiber::getCurrent\n";
var_dump(Fiber::getCurrent());
$f = new Fiber(function () use (&$f) { var_dump(Fiber::getCurrent() === $f); });
$f->start();

echo "-- backtraces through fibers\n";
function where() {
    foreach ((new Exception)->getTrace() as $frame) {
        echo "  ", ($frame['class'] ?? ''), ($frame['type'] ?? ''), $frame['function'], "\n";
    }
}
function deeper() { where(); }
$f = new Fiber(function () { deeper(); });
$f->start();

echo "-- deep recursion inside a fiber\n";
function down(int $n): int { return $n === 0 ? Fiber::suspend(0) : 1 + down($n - 1); }
$f = new Fiber(fn () => down(20000));
$f->start();
$f->resume(0);
var_dump($f->getReturn());

echo "-- a thousand fibers alive\n";
$fibers = [];
for ($i = 0; $i < 1000; $i++) {
    $fibers[$i] = new Fiber(function (int $i) { return Fiber::suspend($i) * 2; });
    $fibers[$i]->start($i);
}
$sum = 0;
foreach ($fibers as $i => $fiber) {
    $fiber->resume($i);
    $sum += $fiber->getReturn();
}
var_dump($sum);
unset($fibers);

echo "-- many fibers one after the other\n";
$total = 0;
for ($i = 0; $i < 50000; $i++) {
    $fiber = new Fiber(fn (int $x) => Fiber::suspend($x) + 1);
    $total += $fiber->start($i);
    $fiber->resume(1);
    $total += $fiber->getReturn();
}
var_dump($total);

echo "-- round-robin scheduler\n";
final class Scheduler {
    private array $queue = [];
    public function spawn(callable $task, string $name): void { $this->queue[] = [new Fiber($task), $name]; }
    public function run(): void {
        while ($this->queue) {
            [$fiber, $name] = array_shift($this->queue);
            $fiber->isStarted() ? $fiber->resume() : $fiber->start($name);
            if (!$fiber->isTerminated()) {
                $this->queue[] = [$fiber, $name];
            }
        }
    }
}
$s = new Scheduler();
foreach (["a" => 3, "b" => 2, "c" => 4] as $name => $steps) {
    $s->spawn(function (string $name) use ($steps) {
        for ($i = 1; $i <= $steps; $i++) {
            echo "$name$i ";
            Fiber::suspend();
        }
    }, $name);
}
$s->run();
echo "\n-- errors\n";
$f = new Fiber(function () {});
$f->start();
try { $f->resume(); } catch (FiberError $e) { echo get_class($e), ": ", $e->getMessage(), "\n"; }
try { Fiber::suspend(); } catch (FiberError $e) { echo get_class($e), ": ", $e->getMessage(), "\n"; }
echo "done\n";
