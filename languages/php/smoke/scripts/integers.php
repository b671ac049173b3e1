<?php
// Integer, date and file-size edge cases whose results depend on PHP's integer size.
// integers.expected is what native 64-bit PHP prints for this script
// (php -n -d sys_temp_dir=/tmp integers.php); a wasm build must print the same.
date_default_timezone_set('UTC');

function show(string $label, $value): void
{
    echo str_pad($label, 34), ' ', var_export($value, true), ' (', gettype($value), ")\n";
}

function attempt(string $label, callable $operation): void
{
    try {
        show($label, $operation());
    } catch (Throwable $error) {
        echo str_pad($label, 34), ' ', get_class($error), ': ', $error->getMessage(), "\n";
    }
}

echo "== limits\n";
show('PHP_INT_SIZE', PHP_INT_SIZE);
show('PHP_INT_MAX', PHP_INT_MAX);
show('PHP_INT_MIN', PHP_INT_MIN);
show('MAX + 1 (overflow to float)', PHP_INT_MAX + 1);
show('MIN - 1 (overflow to float)', PHP_INT_MIN - 1);
show('-MIN', -PHP_INT_MIN);
show('MAX * 2', PHP_INT_MAX * 2);
show('3037000500 ** 2', 3037000500 * 3037000500);
show('3037000499 ** 2', 3037000499 * 3037000499);
show('2 ** 62', 2 ** 62);
show('2 ** 63', 2 ** 63);
show('2 ** 40 + 1', 2 ** 40 + 1);
show('int overflow in ++', (function () { $i = PHP_INT_MAX; $i++; return $i; })());
show('int underflow in --', (function () { $i = PHP_INT_MIN; $i--; return $i; })());

echo "== arithmetic\n";
show('intdiv(MAX, 3)', intdiv(PHP_INT_MAX, 3));
attempt('intdiv(MIN, -1)', fn () => intdiv(PHP_INT_MIN, -1));
show('MAX % 1000', PHP_INT_MAX % 1000);
show('MIN % -1', PHP_INT_MIN % -1);
show('-7 % 3', -7 % 3);
show('fmod(2**53 + 1, 10)', fmod(2 ** 53 + 1, 10));
show('1 << 62', 1 << 62);
show('1 << 63', 1 << 63);
show('1 << 64', 1 << 64);
show('MAX >> 62', PHP_INT_MAX >> 62);
show('-1 >> 63', -1 >> 63);
show('MIN >> 1', PHP_INT_MIN >> 1);
attempt('1 << -1', fn () => 1 << -1);
show('~0', ~0);
show('0x7fffffff + 1', 0x7fffffff + 1);
show('0xffffffff', 0xffffffff);
show('0x7fffffffffffffff', 0x7fffffffffffffff);
show('0x8000000000000000', 0x8000000000000000);
show('abs(MIN)', abs(PHP_INT_MIN));
show('array_sum([MAX, 1])', array_sum([PHP_INT_MAX, 1]));
show('max(MAX, MAX - 1)', max(PHP_INT_MAX, PHP_INT_MAX - 1));
show('MAX == MAX - 1 + 1', PHP_INT_MAX == PHP_INT_MAX - 1 + 1);
show('MAX <=> (float) MAX', PHP_INT_MAX <=> (float) PHP_INT_MAX);

echo "== conversions\n";
show('(int) "9223372036854775807"', (int) "9223372036854775807");
show('(int) "9223372036854775808"', (int) "9223372036854775808");
show('(int) "-9223372036854775809"', (int) "-9223372036854775809");
show('"9223372036854775807" + 0', "9223372036854775807" + 0);
show('"9223372036854775808" + 0', "9223372036854775808" + 0);
show('"4294967296" + 1', "4294967296" + 1);
show('(int) 4294967296.5', (int) 4294967296.5);
show('(int) -2147483649.0', (int) -2147483649.0);
show('(int) 9.2e18', (int) 9.2e18);
show('intval("9999999999999999999")', intval("9999999999999999999"));
show('intval("7fffffffffffffff", 16)', intval("7fffffffffffffff", 16));
show('intval("0x1A", 16)', intval("0x1A", 16));
show('intval("777", 8)', intval("777", 8));
show('hexdec("ffffffff")', hexdec("ffffffff"));
show('hexdec("ffffffffff")', hexdec("ffffffffff"));
show('hexdec("ffffffffffffffff")', hexdec("ffffffffffffffff"));
show('octdec("7777777777777")', octdec("7777777777777"));
show('bindec(63 ones)', bindec(str_repeat('1', 63)));
show('bindec(64 ones)', bindec(str_repeat('1', 64)));
show('dechex(MAX)', dechex(PHP_INT_MAX));
show('dechex(-1)', dechex(-1));
show('decbin(2 ** 40)', decbin(2 ** 40));
show('decoct(-1)', decoct(-1));
show('base_convert("zzzzzzzzzz", 36, 10)', base_convert("zzzzzzzzzz", 36, 10));
show('is_numeric("9223372036854775808")', is_numeric("9223372036854775808"));
show('settype("123456789012", "int")', (function () { $v = "123456789012"; settype($v, "int"); return $v; })());
show('strval(2 ** 52)', strval(2 ** 52));
show('(string) -2 ** 62', (string) -(2 ** 62));

echo "== formatting\n";
show('sprintf("%d", MAX)', sprintf("%d", PHP_INT_MAX));
show('sprintf("%d", MIN)', sprintf("%d", PHP_INT_MIN));
show('sprintf("%u", -1)', sprintf("%u", -1));
show('sprintf("%x", -1)', sprintf("%x", -1));
show('sprintf("%X", 2 ** 40)', sprintf("%X", 2 ** 40));
show('sprintf("%o", MAX)', sprintf("%o", PHP_INT_MAX));
show('sprintf("%b", 2 ** 33 + 5)', sprintf("%b", 2 ** 33 + 5));
show('sprintf("%c", 65 + 2 ** 32)', sprintf("%c", 65 + 2 ** 32));
show('sprintf("%\'.24d", 2 ** 50)', sprintf("%'.24d", 2 ** 50));
show('sprintf("%+d", 2 ** 35)', sprintf("%+d", 2 ** 35));
show('number_format(2 ** 40)', number_format(2 ** 40));
show('str_pad(dechex(2**36), 12, "0")', str_pad(dechex(2 ** 36), 12, "0", STR_PAD_LEFT));

echo "== hashing and packing\n";
show('crc32("The quick brown fox")', crc32("The quick brown fox jumped over the lazy dog."));
show('crc32("")', crc32(""));
show('crc32("kiln")', crc32("kiln"));
show('pack("J", 0x0102030405060708)', bin2hex(pack("J", 0x0102030405060708)));
show('pack("P", 0x0102030405060708)', bin2hex(pack("P", 0x0102030405060708)));
show('pack("q", -2)', bin2hex(pack("q", -2)));
show('pack("Q", MAX)', bin2hex(pack("Q", PHP_INT_MAX)));
show('unpack("q", pack("q", MIN))', unpack("q", pack("q", PHP_INT_MIN))[1]);
show('unpack("J", ff x8)', unpack("J", str_repeat("\xff", 8))[1]);
show('unpack("N", ff x4)', unpack("N", str_repeat("\xff", 4))[1]);
show('unpack("V", 80 00 00 00)', unpack("V", "\x00\x00\x00\x80")[1]);
show('unpack("l", ff x4)', unpack("l", str_repeat("\xff", 4))[1]);
show('md5 as two ints', array_map('hexdec', str_split(substr(md5('kiln'), 0, 16), 8)));

echo "== arrays\n";
$keys = [PHP_INT_MAX => 'max', PHP_INT_MIN => 'min', 2 ** 32 => '2^32', -1 => 'minus one',
         "9223372036854775807" => 'numeric string max', "9223372036854775808" => 'string key'];
show('keys', array_keys($keys));
show('isset($a[2 ** 32])', isset($keys[2 ** 32]));
show('isset($a[0])', isset($keys[0]));
$next = [2 ** 40 => 'a'];
$next[] = 'b';
show('next key after 2**40', array_keys($next));
show('array_flip big values', array_flip([2 ** 33 => 'x', 'y' => 2 ** 34]));
show('range(2**40, 2**40 + 2)', range(2 ** 40, 2 ** 40 + 2));
show('array_fill(2**35, 2, 0)', array_keys(array_fill(2 ** 35, 2, 0)));
$sorted = [PHP_INT_MAX, -1, 2 ** 40, PHP_INT_MIN, 0, 2 ** 31];
sort($sorted);
show('sort', $sorted);

echo "== serialization\n";
show('serialize(MAX)', serialize(PHP_INT_MAX));
show('unserialize(i:MAX)', unserialize('i:9223372036854775807;'));
show('serialize([2**40 => MIN])', serialize([2 ** 40 => PHP_INT_MIN]));
show('var_export(MIN)', var_export(PHP_INT_MIN, true));
show('json_encode(MAX)', json_encode(PHP_INT_MAX));
show('json_encode([2**53 + 1])', json_encode([2 ** 53 + 1]));
show('json_decode(9007199254740993)', json_decode('9007199254740993'));
show('json_decode({"id": big})', json_decode('{"id": 1234567890123456789}', true));
show('json_decode(overflow)', json_decode('12345678901234567890'));
show('json_decode(bigint as string)', json_decode('[12345678901234567890]', true, 512, JSON_BIGINT_AS_STRING));
show('json_decode(-MIN - 1)', json_decode('-9223372036854775808'));
show('print_r', print_r([PHP_INT_MAX, 2 ** 40], true));

echo "== dates past 2038\n";
show('date(2 ** 31)', date('Y-m-d H:i:s', 2 ** 31));
show('date(2 ** 40)', date('Y-m-d H:i:s', 2 ** 40));
show('gmdate(-2 ** 35)', gmdate('D, d M Y H:i:s', -(2 ** 35)));
show('mktime(2200-01-01)', mktime(0, 0, 0, 1, 1, 2200));
show('gmmktime(2038-01-19 03:14:08)', gmmktime(3, 14, 8, 1, 19, 2038));
show('strtotime(2100-01-01)', strtotime('2100-01-01 00:00:00'));
show('strtotime(+100 years, 2 ** 31)', strtotime('+100 years', 2 ** 31));
show('strtotime(1901-12-13 20:45:51)', strtotime('1901-12-13 20:45:51'));
show('strtotime(1000-01-01)', strtotime('1000-01-01'));
show('DateTime(@2 ** 33)', (new DateTime('@' . 2 ** 33))->format(DATE_ATOM));
show('DateTime(9999-12-31)->timestamp', (new DateTime('9999-12-31 23:59:59'))->getTimestamp());
show('DateTime(3000-06-15)->modify', (new DateTime('3000-06-15'))->modify('+1000 years')->format('Y-m-d l'));
show('setTimestamp(2 ** 36)', (new DateTime())->setTimestamp(2 ** 36)->format('Y-m-d H:i:s'));
show('diff 1900..2200 days', (new DateTime('1900-01-01'))->diff(new DateTime('2200-01-01'))->days);
show('DatePeriod across 2038', array_map(fn ($d) => $d->format('Y-m'), iterator_to_array(
    new DatePeriod(new DateTime('2037-11-01'), new DateInterval('P2M'), 3))));
show('idate(Y, 2 ** 34)', idate('Y', 2 ** 34));
show('date(L, 2400)', date('L', mktime(0, 0, 0, 1, 1, 2400)));
show('checkdate(2, 29, 2400)', checkdate(2, 29, 2400));
show('date_parse(2500-02-03)', array_intersect_key(date_parse('2500-02-03 04:05:06'),
    ['year' => 0, 'month' => 0, 'day' => 0, 'hour' => 0]));
show('getdate(2 ** 32)', array_intersect_key(getdate(2 ** 32), ['year' => 0, 'yday' => 0, 'weekday' => 0]));
show('localtime(2 ** 33)[5]', localtime(2 ** 33)[5]);
show('is_int(hrtime(true))', is_int(hrtime(true)));

echo "== files past 4 GiB\n";
$path = tempnam(sys_get_temp_dir(), 'kiln-int');
$file = fopen($path, 'r+');
foreach ([3 * 2 ** 30, 5 * 2 ** 30, 4 * 2 ** 30 + 1] as $size) {
    $done = ftruncate($file, $size);
    clearstatcache();
    show("ftruncate($size)", [$done, fstat($file)['size'], filesize($path)]);
}
show('fseek(6 GiB)', fseek($file, 6 * 2 ** 30));
show('fwrite at 6 GiB', fwrite($file, 'x'));
show('ftell', ftell($file));
clearstatcache();
show('filesize', filesize($path));
show('fseek(-1, SEEK_END)', [fseek($file, -1, SEEK_END), ftell($file), fread($file, 1)]);
show('stat size', stat($path)['size']);
fclose($file);
$spl = new SplFileObject($path, 'r+');
show('SplFileObject::ftruncate(2**32)', $spl->ftruncate(2 ** 32));
clearstatcache();
show('SplFileObject::getSize()', $spl->getSize());
unset($spl);
$memory = fopen('php://memory', 'w+');
show('php://memory ftruncate(10)', [ftruncate($memory, 10), fstat($memory)['size']]);
unlink($path);
echo "done\n";
