<?php
// C recursion inside a fiber: each level is an internal function (array_map) calling back into
// PHP, so each takes C stack, unlike plain PHP recursion. DEPTH levels in a fiber whose C stack
// is fiber.stack_size bytes; then the same again in a fresh fiber (parked slots are reused).
register_shutdown_function(function () { echo "shutdown ran\n"; });
function down(int $n): int { return $n <= 0 ? 0 : array_map('down', [$n - 1])[0] + 1; }
$depth = (int) ($argv[1] ?? 1000);
foreach ([1, 2] as $round) {
    $fiber = new Fiber(fn () => down($depth));
    $fiber->start();
    echo "round $round: ", $fiber->getReturn(), " levels\n";
}
echo "done\n";
