<?php
// Freeing a resource went through a mis-typed function pointer on 7.4 (a trap on wasm).
$path = tempnam(sys_get_temp_dir(), 'kiln');
$fh = fopen($path, 'w');
fwrite($fh, 'kiln');
fclose($fh);
echo file_get_contents($path), " ", strlen(random_bytes(8)), "\n";
unlink($path);
$tmp = tmpfile();
fwrite($tmp, "x");
unset($tmp);
echo "resources ok\n";
