<?php
// bz2 (libbz2): round trips in memory, through a file and through the compress.bzip2:// wrapper.
$text = str_repeat("Kiln fires PHP into WebAssembly. ", 500);
$packed = bzcompress($text, 9);
printf("bzcompress: %d -> %d bytes, md5 %s\n", strlen($text), strlen($packed), md5($packed));
printf("bzdecompress: %s\n", bzdecompress($packed) === $text ? 'same' : 'DIFFERENT');
printf("bad data: %s\n", var_export(bzdecompress('not bzip2 data'), true));

$file = bzopen('/tmp/text.bz2', 'w');
bzwrite($file, $text);
bzclose($file);
printf("file: %d bytes on disk\n", filesize('/tmp/text.bz2'));
$file = bzopen('/tmp/text.bz2', 'r');
$back = '';
while (!feof($file)) {
    $back .= bzread($file, 4096);
}
bzclose($file);
printf("bzread: %s\n", $back === $text ? 'same' : 'DIFFERENT');
file_put_contents('compress.bzip2:///tmp/wrapper.bz2', $text);
printf("compress.bzip2://: %s\n", file_get_contents('compress.bzip2:///tmp/wrapper.bz2') === $text ? 'same' : 'DIFFERENT');
echo "bz2 ok\n";
