<?php
// The demo's page: where am I running, with what environment, and what can I see?
$platform = php_uname();
printf("Hello from PHP %s running on \"%s\"\n", PHP_VERSION, $platform);

$vars = getenv();
printf("Running with %d environment variables\n", count($vars));
foreach (array_keys($vars) as $name) {
    echo "  $name\n";
}

date_default_timezone_set('UTC');
printf("Greetings! It is %s\n", date('l jS \of F Y h:i:s A'));

// On PHP 8 a failed scandir() returns false and array_diff() would throw: check first.
$entries = scandir('/');
if ($entries === false) {
    echo "Cannot list /\n";
} else {
    echo "Contents of /:\n";
    foreach (array_diff($entries, ['.', '..']) as $entry) {
        echo "  $entry\n";
    }
}
