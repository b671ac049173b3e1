<?php
register_shutdown_function(function () { echo "shutdown function ran\n"; });
echo "before\n";
kiln_no_such_function();
echo "not reached\n";
