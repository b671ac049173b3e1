<?php
// The wordpress flavour has OPcache built in: in file-cache-only mode (no shared memory,
// which a per-request instance could not keep) a compiled script is stored as a file.
if (!function_exists('opcache_get_configuration')) {
    echo "opcache missing\n";
    exit(1);
}
$directives = opcache_get_configuration()['directives'];
echo 'file_cache_only=', var_export($directives['opcache.file_cache_only'], true), "\n";
require __DIR__ . '/opcache-include.php';
echo kiln_opcache_included(), "\n";
// Stored under <file_cache>/<system id>/<script path>.bin.
$stored = 0;
foreach (scandir('/tmp') as $id) {
    $entry = "/tmp/$id/scripts/opcache-include.php.bin";
    if ($id[0] !== '.' && is_file($entry) && filesize($entry) > 0) {
        $stored++;
    }
}
echo $stored === 1 ? "stored ok\n" : "stored $stored\n";
