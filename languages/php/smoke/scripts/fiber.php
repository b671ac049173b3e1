<?php
try {
    $fiber = new Fiber(function () { return 1; });
    $fiber->start();
    echo "fiber ran\n";
} catch (Error $e) {
    echo "caught Error: ", $e->getMessage(), "\n";
}
echo "still alive\n";
