<?php
register_shutdown_function(function () { echo "shutdown ran\n"; });
$f = new Fiber(function () {
    echo "in fiber\n";
    Fiber::suspend();
    trigger_error("fatal inside a fiber", E_USER_ERROR);
});
$f->start();
$f->resume();
echo "not reached\n";
