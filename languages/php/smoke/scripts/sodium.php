<?php
// ext/sodium against Kiln's libsodium: every line is deterministic, so sodium.expected is what
// native PHP prints for this script (php -n sodium.php); a wasm build must print the same.
// Keys, nonces, sealed boxes and password hashes are random: only verify results, lengths and
// round trips are printed; fixed keys and nonces give fixed bytes.
function line(string $label, $value): void
{
    echo str_pad($label, 30), ' ', is_string($value) ? $value : var_export($value, true), "\n";
}

line('library version', SODIUM_LIBRARY_VERSION);
$message = "The quick brown fox jumps over the lazy dog";

// secretbox (XSalsa20-Poly1305): fixed key and nonce, then random ones.
$key = str_repeat("\x01", SODIUM_CRYPTO_SECRETBOX_KEYBYTES);
$nonce = str_repeat("\x02", SODIUM_CRYPTO_SECRETBOX_NONCEBYTES);
$box = sodium_crypto_secretbox($message, $nonce, $key);
line('secretbox fixed', bin2hex($box));
line('secretbox open', sodium_crypto_secretbox_open($box, $nonce, $key));
$box[0] = chr(ord($box[0]) ^ 1);
line('secretbox tampered', sodium_crypto_secretbox_open($box, $nonce, $key));
$rkey = sodium_crypto_secretbox_keygen();
$rnonce = random_bytes(SODIUM_CRYPTO_SECRETBOX_NONCEBYTES);
line('secretbox random round trip', sodium_crypto_secretbox_open(sodium_crypto_secretbox($message, $rnonce, $rkey), $rnonce, $rkey) === $message);

// AEAD with a fixed key: XChaCha20-Poly1305 (IETF).
$aeadKey = str_repeat("\x03", SODIUM_CRYPTO_AEAD_XCHACHA20POLY1305_IETF_KEYBYTES);
$aeadNonce = str_repeat("\x04", SODIUM_CRYPTO_AEAD_XCHACHA20POLY1305_IETF_NPUBBYTES);
$aead = sodium_crypto_aead_xchacha20poly1305_ietf_encrypt($message, 'header', $aeadNonce, $aeadKey);
line('xchacha20poly1305 fixed', bin2hex($aead));
line('xchacha20poly1305 decrypt', sodium_crypto_aead_xchacha20poly1305_ietf_decrypt($aead, 'header', $aeadNonce, $aeadKey));

// Sealed box: anonymous sender, random keypair made in the guest.
$keypair = sodium_crypto_box_keypair();
$sealed = sodium_crypto_box_seal($message, sodium_crypto_box_publickey($keypair));
line('sealed box length', strlen($sealed));
line('sealed box open', sodium_crypto_box_seal_open($sealed, $keypair));
line('sealed box wrong key', sodium_crypto_box_seal_open($sealed, sodium_crypto_box_keypair()));

// Signatures (Ed25519): a seeded keypair is deterministic, a random one must verify.
$seeded = sodium_crypto_sign_seed_keypair(str_repeat("\x05", SODIUM_CRYPTO_SIGN_SEEDBYTES));
line('sign seeded public key', bin2hex(sodium_crypto_sign_publickey($seeded)));
line('sign seeded signature', bin2hex(sodium_crypto_sign_detached($message, sodium_crypto_sign_secretkey($seeded))));
$signer = sodium_crypto_sign_keypair();
$signature = sodium_crypto_sign_detached($message, sodium_crypto_sign_secretkey($signer));
line('sign random length', strlen($signature));
line('sign verify', sodium_crypto_sign_verify_detached($signature, $message, sodium_crypto_sign_publickey($signer)));
line('sign verify tampered', sodium_crypto_sign_verify_detached($signature, $message . '!', sodium_crypto_sign_publickey($signer)));

// Hashing and key derivation with fixed inputs.
line('generichash (blake2b)', sodium_bin2hex(sodium_crypto_generichash($message)));
line('shorthash', bin2hex(sodium_crypto_shorthash($message, str_repeat("\x06", SODIUM_CRYPTO_SHORTHASH_KEYBYTES))));
line('kdf derive', bin2hex(sodium_crypto_kdf_derive_from_key(32, 1, 'kilntest', str_repeat("\x07", SODIUM_CRYPTO_KDF_KEYBYTES))));
// Argon2id at 1 MiB and the fewest passes, not the "interactive" 64 MiB: the same code paths,
// and fast enough for the interpreted runtimes the smoke checks also run under.
$ops = 2;
$mem = 1 << 20;
line('pwhash argon2id fixed salt', bin2hex(sodium_crypto_pwhash(32, 'password', str_repeat("\x08", SODIUM_CRYPTO_PWHASH_SALTBYTES),
    $ops, $mem, SODIUM_CRYPTO_PWHASH_ALG_ARGON2ID13)));

// Password hashing strings (random salt): verify facts only.
$stored = sodium_crypto_pwhash_str('correct horse', $ops, $mem);
line('pwhash_str prefix', substr($stored, 0, strpos($stored, '$', 1) + 1));
line('pwhash_str verify', sodium_crypto_pwhash_str_verify($stored, 'correct horse'));
line('pwhash_str verify wrong', sodium_crypto_pwhash_str_verify($stored, 'wrong horse'));

// password_hash's Argon2id comes from libsodium when PHP is built --with-sodium.
line('password algos', implode(',', password_algos()));
if (defined('PASSWORD_ARGON2ID')) {
    $hash = password_hash('correct horse', PASSWORD_ARGON2ID, ['memory_cost' => 1 << 10, 'time_cost' => 2]);
    line('argon2id info', password_get_info($hash)['algoName']);
    line('argon2id prefix', substr($hash, 0, strlen('$argon2id$v=19$m=1024,t=2,p=1$')));
    line('argon2id verify', password_verify('correct horse', $hash));
    line('argon2id verify wrong', password_verify('wrong horse', $hash));
    line('argon2id needs rehash', password_needs_rehash($hash, PASSWORD_ARGON2ID, ['memory_cost' => 1 << 10, 'time_cost' => 2]));
}
line('memzero', (function () { $s = 'secret'; sodium_memzero($s); return $s; })());
echo "sodium ok\n";
