<?php
// zip (libzip): write an archive with a folder in it, list it, read entries, extract it.
$path = '/tmp/archive.zip';
@unlink($path);
$zip = new ZipArchive();
printf("open for writing: %s\n", var_export($zip->open($path, ZipArchive::CREATE | ZipArchive::EXCL), true));
$zip->addEmptyDir('docs');
$zip->addFromString('docs/readme.txt', str_repeat("Kiln fires PHP into WebAssembly.\n", 200));
$zip->addFromString('hello.php', '<?php echo "hello from a zip";');
$zip->addFromString('stored.bin', str_repeat("\x01\x02", 64));
$zip->setCompressionName('stored.bin', ZipArchive::CM_STORE);
$zip->setArchiveComment('made by the smoke check');
printf("entries before close: %d\n", $zip->numFiles);
printf("close: %s\n", var_export($zip->close(), true));

$zip = new ZipArchive();
printf("open for reading: %s\n", var_export($zip->open($path, ZipArchive::RDONLY), true));
printf("comment: %s\n", $zip->getArchiveComment());
for ($i = 0; $i < $zip->numFiles; $i++) {
    $stat = $zip->statIndex($i);
    printf("  %-16s size %5d crc %08x method %s\n", $stat['name'], $stat['size'], $stat['crc'],
           $stat['comp_method'] === ZipArchive::CM_DEFLATE ? 'deflate' : ($stat['comp_method'] === ZipArchive::CM_STORE ? 'store' : $stat['comp_method']));
}
printf("readme lines: %d\n", substr_count($zip->getFromName('docs/readme.txt'), "\n"));
printf("locateName(hello.php): %d\n", $zip->locateName('hello.php'));
$stream = $zip->getStream('hello.php');
printf("stream: %s\n", stream_get_contents($stream));
fclose($stream);
printf("extract: %s\n", var_export($zip->extractTo('/tmp/extracted'), true));
$zip->close();
printf("extracted folder: %s\n", is_dir('/tmp/extracted/docs') ? 'yes' : 'no');
printf("extracted file: %d bytes\n", filesize('/tmp/extracted/docs/readme.txt'));
printf("zip:// wrapper: %s\n", file_get_contents("zip://$path#hello.php"));

// Change an archive in place: delete an entry, rename another.
$zip = new ZipArchive();
$zip->open($path);
$zip->deleteName('stored.bin');
$zip->renameName('hello.php', 'index.php');
$zip->close();
$zip->open($path, ZipArchive::RDONLY);
$names = [];
for ($i = 0; $i < $zip->numFiles; $i++) {
    $names[] = $zip->getNameIndex($i);
}
printf("after changes: %s\n", implode(' ', $names));
$bad = new ZipArchive();
printf("not a zip: %s\n", $bad->open('/tmp/extracted/docs/readme.txt') === ZipArchive::ER_NOZIP ? 'ER_NOZIP' : 'other');
echo "zip ok\n";
