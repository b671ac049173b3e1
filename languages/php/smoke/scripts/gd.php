<?php
// gd (bundled libgd with libpng, libjpeg-turbo, libwebp, FreeType): encode and decode each format,
// make a thumbnail, draw text with a TrueType font. Compared whole with native PHP's output
// (gd.expected), so it prints only what both must agree on: lossless formats exactly, lossy ones
// as "close" within a tolerance (native and wasm link different libjpeg/libwebp releases).
$font = $argv[1] ?? '/fonts/DejaVuSans.ttf';

$info = gd_info();
foreach (['PNG Support', 'JPEG Support', 'WebP Support', 'FreeType Support', 'GIF Read Support',
          'GIF Create Support'] as $key) {
    printf("%s: %s\n", $key, !empty($info[$key]) ? 'yes' : 'no');
}

// A 96x64 picture: a smooth gradient (JPEG keeps it within a few levels), a filled rectangle and
// a circle in solid colours.
$im = imagecreatetruecolor(96, 64);
for ($y = 0; $y < 64; $y++) {
    for ($x = 0; $x < 96; $x++) {
        imagesetpixel($im, $x, $y, imagecolorallocate($im, $x * 2, $y * 3, 128));
    }
}
imagefilledrectangle($im, 8, 8, 31, 23, imagecolorallocate($im, 200, 30, 30));
imagefilledellipse($im, 64, 40, 24, 24, imagecolorallocate($im, 20, 180, 60));

function encoded(callable $write): string {
    ob_start();
    $write();
    return ob_get_clean();
}

function rgb($im, int $x, int $y): array {
    $c = imagecolorat($im, $x, $y);
    return [($c >> 16) & 255, ($c >> 8) & 255, $c & 255];
}

function differs($a, $b): int {
    $worst = 0;
    foreach ([[4, 4], [20, 15], [64, 40], [90, 60], [48, 32]] as [$x, $y]) {
        foreach (array_map(null, rgb($a, $x, $y), rgb($b, $x, $y)) as [$p, $q]) {
            $worst = max($worst, abs($p - $q));
        }
    }
    return $worst;
}

$formats = [
    'png' => [fn() => imagepng($im, null, 9), 0],
    'jpeg' => [fn() => imagejpeg($im, null, 90), 24],
    'webp' => [fn() => imagewebp($im, null, 90), 32],
    'gif' => [fn() => imagegif($im), 255],
];
foreach ($formats as $name => [$write, $tolerance]) {
    $bytes = encoded($write);
    $size = getimagesizefromstring($bytes);
    $back = imagecreatefromstring($bytes);
    $worst = differs($im, $back);
    // GIF is a palette format: only its size and type are compared.
    $verdict = $name === 'gif' ? 'palette' : ($worst === 0 ? 'exact' : ($worst <= $tolerance ? 'close' : "off by $worst"));
    printf("%s: %dx%d %s, decoded %dx%d truecolor=%s pixels %s\n", $name, $size[0], $size[1], $size['mime'],
           imagesx($back), imagesy($back), imageistruecolor($back) ? 'yes' : 'no', $verdict);
}

// Files: write each format to disk and read it back through its own decoder.
foreach (['png', 'jpeg', 'webp'] as $name) {
    $path = "/tmp/picture.$name";
    ("image$name")($im, $path);
    $back = ("imagecreatefrom$name")($path);
    printf("%s file: %s, %dx%d\n", $name, image_type_to_mime_type(getimagesize($path)[2]),
           imagesx($back), imagesy($back));
}

// Thumbnails, as WordPress makes them: scale, and resample into a cropped square.
$thumb = imagescale($im, 48, -1, IMG_BICUBIC);
printf("imagescale: %dx%d\n", imagesx($thumb), imagesy($thumb));
$square = imagecreatetruecolor(32, 32);
imagecopyresampled($square, $im, 0, 0, 16, 0, 32, 32, 64, 64);
printf("imagecopyresampled: %dx%d\n", imagesx($square), imagesy($square));
$rotated = imagerotate($im, 90, 0);
printf("imagerotate: %dx%d\n", imagesx($rotated), imagesy($rotated));
$cropped = imagecrop($im, ['x' => 8, 'y' => 8, 'width' => 24, 'height' => 16]);
printf("imagecrop: %dx%d, colour %s\n", imagesx($cropped), imagesy($cropped), implode(',', rgb($cropped, 5, 5)));
$small = encoded(fn() => imagejpeg($thumb, null, 82));
printf("thumbnail jpeg: %s\n", getimagesizefromstring($small)[3]);

// TrueType text through FreeType.
$canvas = imagecreatetruecolor(240, 60);
imagefill($canvas, 0, 0, imagecolorallocate($canvas, 255, 255, 255));
$box = imagettftext($canvas, 20, 0, 10, 40, imagecolorallocate($canvas, 0, 0, 0), $font, 'Kiln gd');
$inked = 0;
for ($y = 0; $y < 60; $y++) {
    for ($x = 0; $x < 240; $x++) {
        $inked += (imagecolorat($canvas, $x, $y) & 0xFF) < 128;
    }
}
// Boxes to the nearest 10 pixels: FreeType releases and libgd's own box code differ by one.
function about(int $pixels): int {
    return (int) round($pixels / 10) * 10;
}
printf("imagettftext: box %s, width about %d, height about %d, inked %s\n", is_array($box) ? 'returned' : 'missing',
       about($box[2] - $box[0]), about($box[1] - $box[7]), $inked > 200 ? 'yes' : "only $inked pixels");
$bbox = imagettfbbox(20, 0, $font, 'Kiln gd');
printf("imagettfbbox: width about %d, height about %d\n", about($bbox[2] - $bbox[0]), about($bbox[1] - $bbox[7]));
echo "gd ok\n";
