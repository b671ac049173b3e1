<?php
// exif: read the tags of a JPEG whose APP1 segment this script writes byte by byte (a TIFF header
// and one IFD: Make, Model, Orientation, DateTime), from a file and from a stream. The picture is
// an 8x8 baseline JPEG (made once with gd), so exif needs no image library.
$picture = base64_decode(<<<'JPEG'
/9j/4AAQSkZJRgABAQEAYABgAAD//gA7Q1JFQVRPUjogZ2QtanBlZyB2MS4wICh1c2luZyBJSkcgSlBFRyB2NjIpLCBx
dWFsaXR5ID0gNTAK/9sAQwAQCwwODAoQDg0OEhEQExgoGhgWFhgxIyUdKDozPTw5Mzg3QEhcTkBEV0U3OFBtUVdfYmdo
Zz5NcXlwZHhcZWdj/9sAQwEREhIYFRgvGhovY0I4QmNjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj
Y2NjY2NjY2NjY2Nj/8AAEQgACAAIAwEiAAIRAQMRAf/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQ
AAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2
Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4
ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/EAB8BAAMBAQEBAQEBAQEAAAAAAAABAgMEBQYH
CAkKC//EALURAAIBAgQEAwQHBQQEAAECdwABAgMRBAUhMQYSQVEHYXETIjKBCBRCkaGxwQkjM1LwFWJy0QoWJDThJfEX
GBkaJicoKSo1Njc4OTpDREVGR0hJSlNUVVZXWFlaY2RlZmdoaWpzdHV2d3h5eoKDhIWGh4iJipKTlJWWl5iZmqKjpKWm
p6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uLj5OXm5+jp6vLz9PX29/j5+v/aAAwDAQACEQMRAD8AoUUUV7h5
5//Z
JPEG);
function entry(int $tag, int $type, int $count, string $value): string {
    return pack('vvV', $tag, $type, $count) . str_pad($value, 4, "\0");
}

$make = "Kiln\0";
$model = "wasm32-wasi camera\0";
$date = "2026:12:07 21:00:00\0";
$entries = 4;
$dataAt = 8 + 2 + $entries * 12 + 4;   // after the TIFF header, the count, the entries, next-IFD
$ifd = pack('v', $entries)
    . entry(0x010F, 2, strlen($make), pack('V', $dataAt))
    . entry(0x0110, 2, strlen($model), pack('V', $dataAt + strlen($make)))
    . entry(0x0112, 3, 1, pack('v', 6))
    . entry(0x0132, 2, strlen($date), pack('V', $dataAt + strlen($make) + strlen($model)))
    . pack('V', 0);
$tiff = "II*\0" . pack('V', 8) . $ifd . $make . $model . $date;
$app1 = "Exif\0\0" . $tiff;
$jpeg = "\xFF\xD8" . "\xFF\xE1" . pack('n', strlen($app1) + 2) . $app1 . substr($picture, 2);

file_put_contents('/tmp/tagged.jpg', $jpeg);
printf("exif_imagetype: %s\n", image_type_to_mime_type(exif_imagetype('/tmp/tagged.jpg')));
$tags = exif_read_data('/tmp/tagged.jpg');
foreach (['Make', 'Model', 'Orientation', 'DateTime', 'SectionsFound'] as $key) {
    printf("%s: %s\n", $key, $tags[$key] ?? '(missing)');
}
$stream = fopen('php://memory', 'w+');
fwrite($stream, $jpeg);
rewind($stream);
$fromStream = exif_read_data($stream);
printf("from a stream: %s %s\n", $fromStream['Make'] ?? '(missing)', $fromStream['Model'] ?? '(missing)');
printf("tag name 0x0112: %s\n", exif_tagname(0x0112));
echo "exif ok\n";
