<?php
// A phar signed with an RSA key made in the guest (Phar::OPENSSL: ext/phar verifies it through
// ext/openssl), opened again with its public key beside it, then tampered with. Needs
// phar.readonly=0 and a writable /tmp. Every line is deterministic; phar-openssl.expected is what
// native PHP prints (php -n -d extension=phar -d phar.readonly=0 phar-openssl.php).
$config = ['config' => __DIR__ . '/openssl.cnf'];
$key = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_RSA, 'private_key_bits' => 1024] + $config);
openssl_pkey_export($key, $private, null, $config);
$public = openssl_pkey_get_details($key)['key'];

$path = '/tmp/signed.phar';
@unlink($path);
@unlink("$path.pubkey");
$phar = new Phar($path);
$phar->startBuffering();
$phar->addFromString('index.php', '<?php echo "signed phar runs\n";');
$phar->setStub($phar->createDefaultStub('index.php'));
$phar->setSignatureAlgorithm(Phar::OPENSSL, $private);
$phar->stopBuffering();
unset($phar);
file_put_contents("$path.pubkey", $public);   // where ext/phar looks for the public key

$opened = new Phar($path);
echo "signature: ", $opened->getSignature()['hash_type'], "\n";
unset($opened);
include $path;

// One byte of the payload changed: opening it must fail the signature check.
$bytes = file_get_contents($path);
$at = strpos($bytes, 'signed phar runs');
$bytes[$at] = 'S';
$tampered = '/tmp/tampered.phar';
file_put_contents($tampered, $bytes);
copy("$path.pubkey", "$tampered.pubkey");
try {
    new Phar($tampered);
    echo "tampered: opened\n";
} catch (UnexpectedValueException $error) {
    echo "tampered: refused (", strpos($error->getMessage(), 'signature') !== false ? 'signature' : $error->getMessage(), ")\n";
}
echo "phar-openssl ok\n";
