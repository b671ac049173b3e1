<?php
// phar: build an archive with a stub, run it, read from it through phar:// streams, and make
// compressed copies (gzip and bzip2 where the build has zlib and bz2). Needs phar.readonly=0.
$path = '/tmp/app.phar';
@unlink($path);
$phar = new Phar($path);
$phar->startBuffering();
$phar->addFromString('index.php', '<?php echo "running inside ", basename(Phar::running()), "\n"; require "phar://" . Phar::running(false) . "/lib/greet.php"; echo greet("phar"), "\n";');
$phar->addFromString('lib/greet.php', '<?php function greet($who) { return "hello from $who"; }');
$phar->addFromString('data.txt', str_repeat("line\n", 100));
$phar->setStub($phar->createDefaultStub('index.php'));
$phar->setSignatureAlgorithm(Phar::SHA256);   // 7.4 signs with SHA-1 by default, 8.x with SHA-256
$phar->setMetadata(['built by' => 'the smoke check']);
$phar->stopBuffering();
printf("entries: %d, signature %s\n", count($phar), $phar->getSignature()['hash_type']);

include $path;   // runs the stub, which runs index.php
printf("phar:// read: %d lines\n", substr_count(file_get_contents("phar://$path/data.txt"), "\n"));
$stream = fopen("phar://$path/lib/greet.php", 'r');
printf("phar:// stream: %s\n", substr(stream_get_contents($stream), 0, 5));
fclose($stream);
printf("metadata: %s\n", (new Phar($path))->getMetadata()['built by']);
printf("is_dir(phar://.../lib): %s\n", is_dir("phar://$path/lib") ? 'yes' : 'no');

foreach ([Phar::GZ => 'gz', Phar::BZ2 => 'bz2'] as $method => $name) {
    if (!Phar::canCompress($method)) {
        echo "$name: not available\n";
        continue;
    }
    $copy = new Phar($path);
    $compressed = $copy->compress($method);
    printf("%s: %s, data.txt %s\n", $name, basename($compressed->getPath()),
           $compressed['data.txt']->getContent() === str_repeat("line\n", 100) ? 'same' : 'DIFFERENT');
}
$tar = new PharData('/tmp/archive.tar');
$tar->addFromString('a.txt', 'tar entry');
printf("PharData tar: %s\n", file_get_contents('phar:///tmp/archive.tar/a.txt'));
echo "phar ok\n";
