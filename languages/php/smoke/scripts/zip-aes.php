<?php
// zip with WinZip AES (libzip+crypto: OpenSSL's libcrypto): write entries encrypted with AES-256
// and AES-128 beside a plain one, read them back only with the right password, and read an
// archive native PHP encrypted (zip-aes-native.zip, made once with Debian's php8.2-zip).
// PHP 7.4's ext/zip (1.15) has no isEncryptionMethodSupported(): there, the constant's presence
// says it, and the round trips below prove it either way.
$supported = method_exists('ZipArchive', 'isEncryptionMethodSupported')
    ? fn($method) => ZipArchive::isEncryptionMethodSupported($method)
    : fn($method) => true;
foreach (['EM_AES_128', 'EM_AES_192', 'EM_AES_256'] as $name) {
    printf("%s supported: %s\n", $name, var_export(defined("ZipArchive::$name") && $supported(constant("ZipArchive::$name")), true));
}
$path = '/tmp/secret.zip';
@unlink($path);
$zip = new ZipArchive();
$zip->open($path, ZipArchive::CREATE | ZipArchive::EXCL);
$zip->addFromString('secret.txt', str_repeat("the keys to the kiln\n", 50));
$zip->addFromString('aes128.txt', 'short secret');
$zip->addFromString('plain.txt', 'nothing to hide');
printf("encrypt secret.txt: %s\n", var_export($zip->setEncryptionName('secret.txt', ZipArchive::EM_AES_256, 'kiln-pass'), true));
printf("encrypt aes128.txt: %s\n", var_export($zip->setEncryptionName('aes128.txt', ZipArchive::EM_AES_128, 'kiln-pass'), true));
printf("close: %s\n", var_export($zip->close(), true));

function read_back(string $path, string $label): void {
    $methods = [ZipArchive::EM_NONE => 'none', ZipArchive::EM_AES_128 => 'aes-128',
                ZipArchive::EM_AES_192 => 'aes-192', ZipArchive::EM_AES_256 => 'aes-256'];
    $zip = new ZipArchive();
    $zip->open($path, ZipArchive::RDONLY);
    echo "$label:\n";
    for ($i = 0; $i < $zip->numFiles; $i++) {
        $stat = $zip->statIndex($i);
        printf("  %-12s size %4d encryption %s\n", $stat['name'], $stat['size'], $methods[$stat['encryption_method']] ?? $stat['encryption_method']);
    }
    printf("  without a password: %s\n", var_export($zip->getFromName('secret.txt'), true));
    $zip->setPassword('wrong');
    printf("  with a wrong one: %s\n", var_export($zip->getFromName('secret.txt'), true));
    $zip->setPassword('kiln-pass');
    $secret = $zip->getFromName('secret.txt');
    printf("  with the right one: %d bytes, md5 %s\n", strlen($secret), md5($secret));
    printf("  aes128.txt: %s\n", $zip->getFromName('aes128.txt'));
    printf("  plain.txt: %s\n", $zip->getFromName('plain.txt'));
    $zip->close();
}
read_back($path, 'written here');
read_back(__DIR__ . '/zip-aes-native.zip', 'written by native PHP');
echo "zip aes ok\n";
