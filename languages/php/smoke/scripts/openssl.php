<?php
// ext/openssl against Kiln's OpenSSL: every line is deterministic, so openssl.expected is what
// native PHP prints for this script (php -n openssl.php); a wasm build must print the same.
// Keys, IVs and signatures are random: only what does not depend on them is printed
// (verify results, lengths, round trips).
function line(string $label, $value): void
{
    echo str_pad($label, 30), ' ', is_string($value) ? $value : var_export($value, true), "\n";
}

$message = "The quick brown fox jumps over the lazy dog";
foreach (['md5', 'sha1', 'sha256', 'sha384', 'sha512', 'sha3-256', 'ripemd160'] as $algo) {
    line("digest $algo", openssl_digest($message, $algo));
}
line('digest sha256 raw length', strlen(openssl_digest($message, 'sha256', true)));
line('hmac sha256 (hash_hmac)', hash_hmac('sha256', $message, 'key'));
// hash_hmac is PHP's own (ext/hash); OpenSSL's HMAC is reached through PBKDF2 (HMAC inside):
// it must give the known value and agree with ext/hash's.
line('pbkdf2 sha256', bin2hex(openssl_pbkdf2('password', 'salt', 32, 1000, 'sha256')));
line('hash_pbkdf2 agrees', hash_pbkdf2('sha256', 'password', 'salt', 1000, 32, true)
    === openssl_pbkdf2('password', 'salt', 32, 1000, 'sha256'));

// Ciphers: fixed key and IV give fixed output; a random key and IV must round-trip.
$key = str_repeat("\x01", 32);
$iv = str_repeat("\x02", 12);
$tag = '';
$sealed = openssl_encrypt($message, 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $iv, $tag, 'header');
line('aes-256-gcm ciphertext', bin2hex($sealed));
line('aes-256-gcm tag', bin2hex($tag));
line('aes-256-gcm decrypt', openssl_decrypt($sealed, 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $iv, $tag, 'header'));
line('aes-256-gcm bad tag', openssl_decrypt($sealed, 'aes-256-gcm', $key, OPENSSL_RAW_DATA, $iv,
    str_repeat("\0", 16), 'header'));
$rkey = openssl_random_pseudo_bytes(32);
$riv = openssl_random_pseudo_bytes(openssl_cipher_iv_length('aes-256-gcm'));
$rsealed = openssl_encrypt($message, 'aes-256-gcm', $rkey, 0, $riv, $rtag);
line('aes-256-gcm random round trip', openssl_decrypt($rsealed, 'aes-256-gcm', $rkey, 0, $riv, $rtag) === $message);
line('aes-256-cbc', openssl_encrypt($message, 'aes-256-cbc', $key, 0, str_repeat("\x03", 16)));
line('chacha20-poly1305 known', in_array('chacha20-poly1305', openssl_get_cipher_methods(), true));

// Randomness: lengths, and two draws that differ.
$lengths = [];
foreach ([1, 16, 32, 64, 1000] as $n) {
    $lengths[] = strlen(openssl_random_pseudo_bytes($n, $strong));
}
line('random lengths', implode(',', $lengths));
line('random strong', $strong);
line('random draws differ', openssl_random_pseudo_bytes(32) !== openssl_random_pseudo_bytes(32));

// Keys made in the guest: RSA (1024 bits: finding 2048-bit primes took 27 s under WasmEdge, near the
// smoke checks' 60 s limit) and EC (P-256), sign and verify, export and re-import. PHP reads an
// openssl.cnf for these (the default one is OPENSSLDIR's, not granted here): ours, both natively
// and in the guest.
$config = ['config' => __DIR__ . '/openssl.cnf'];
foreach ([
    'rsa 1024' => ['private_key_type' => OPENSSL_KEYTYPE_RSA, 'private_key_bits' => 1024],
    'ec prime256v1' => ['private_key_type' => OPENSSL_KEYTYPE_EC, 'curve_name' => 'prime256v1'],
] as $label => $options) {
    $pkey = openssl_pkey_new($options + $config);
    if ($pkey === false) {
        line("$label new", 'failed: ' . openssl_error_string());
        continue;
    }
    $details = openssl_pkey_get_details($pkey);
    line("$label bits", $details['bits']);
    $public = openssl_pkey_get_public($details['key']);
    openssl_sign($message, $signature, $pkey, OPENSSL_ALGO_SHA256);
    line("$label verify", openssl_verify($message, $signature, $public, OPENSSL_ALGO_SHA256));
    line("$label verify tampered", openssl_verify($message . '!', $signature, $public, OPENSSL_ALGO_SHA256));
    openssl_pkey_export($pkey, $pem, null, $config);
    // PKCS#8 ("PRIVATE KEY") from 8.0 on; 7.4 writes EC keys as "EC PRIVATE KEY": either is right.
    line("$label export pem", preg_match('/^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----\n/', $pem) === 1);
    line("$label re-import", openssl_pkey_get_details(openssl_pkey_get_private($pem))['bits']);
    if ($label === 'rsa 1024') {
        line("$label signature length", strlen($signature));
        openssl_public_encrypt('secret', $encrypted, $public, OPENSSL_PKCS1_OAEP_PADDING);
        openssl_private_decrypt($encrypted, $decrypted, $pkey, OPENSSL_PKCS1_OAEP_PADDING);
        line("$label oaep round trip", $decrypted);
    }
}

// A self-signed certificate made in the guest, parsed back.
$pkey = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_EC, 'curve_name' => 'prime256v1'] + $config);
$csr = openssl_csr_new(['commonName' => 'kiln.test'], $pkey, ['digest_alg' => 'sha256'] + $config);
$cert = openssl_csr_sign($csr, null, $pkey, 1, ['digest_alg' => 'sha256'] + $config, 42);
$parsed = openssl_x509_parse($cert);
line('x509 subject CN', $parsed['subject']['CN']);
line('x509 serial', $parsed['serialNumber']);
line('x509 verify with own key', openssl_x509_verify($cert, openssl_pkey_get_details($pkey)['key']));
echo "openssl ok\n";
