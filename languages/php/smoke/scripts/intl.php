<?php
// ext/intl on Kiln's ICU 76 (data linked in): formatting, collation, normalization,
// transliteration, character properties and IDNA, compared whole with native PHP's output
// (intl.expected, made by Debian's php8.2-intl, which links ICU 72). Cases whose CLDR data
// changed between ICU 72 and 76 are left out (see docs/images.md, "intl").
$when = 1705312800;   // 2024-01-15 10:00:00 UTC
foreach (['en_US', 'de_DE', 'ja_JP', 'ar_EG'] as $locale) {
    $date = new IntlDateFormatter($locale, IntlDateFormatter::LONG, IntlDateFormatter::NONE, 'UTC');
    $number = new NumberFormatter($locale, NumberFormatter::DECIMAL);
    echo "$locale date: ", $date->format($when), "\n";
    echo "$locale number: ", $number->format(1234567.891), "\n";
}
$euro = new NumberFormatter('de_DE', NumberFormatter::CURRENCY);
echo "de_DE currency: ", $euro->formatCurrency(1234.5, 'EUR'), "\n";
$dollar = new NumberFormatter('en_US', NumberFormatter::CURRENCY);
echo "en_US currency: ", $dollar->formatCurrency(-1234.5, 'USD'), "\n";
$yen = new NumberFormatter('ja_JP', NumberFormatter::CURRENCY);
echo "ja_JP currency: ", $yen->formatCurrency(1234.5, 'JPY'), "\n";

$words = ['zèbre', 'été', 'Äpfel', 'apple', 'öl', 'ol', 'eté', 'ete', 'côte', 'cote', 'coté', 'côté', 'zoo'];
foreach (['fr_FR', 'sv_SE'] as $locale) {
    $sorted = $words;
    (new Collator($locale))->sort($sorted);
    echo "$locale sort: ", implode(' ', $sorted), "\n";
}

$composed = "\u{00e9}t\u{00e9}";       // été, precomposed
$decomposed = Normalizer::normalize($composed, Normalizer::FORM_D);
echo "NFD: ", bin2hex($decomposed), " length ", strlen($decomposed), "\n";
echo "NFC: ", bin2hex(Normalizer::normalize($decomposed, Normalizer::FORM_C)), "\n";
echo "NFKC ligature: ", Normalizer::normalize("\u{fb01}", Normalizer::FORM_KC), "\n";
echo "is NFC: ", var_export(Normalizer::isNormalized($decomposed, Normalizer::FORM_C), true), "\n";

$latin = Transliterator::create('Any-Latin');
foreach (['Москва', 'Αθήνα', 'こんにちは'] as $text) {
    echo "Any-Latin $text: ", $latin->transliterate($text), "\n";
}
echo "Latin-ASCII: ", Transliterator::create('Any-Latin; Latin-ASCII')->transliterate('Crème Brûlée'), "\n";

foreach ([0x00e9, 0x0663, 0x4e2d, 0x1f600] as $codepoint) {
    printf("U+%04X %s alpha=%d digit=%d upper=%s type=%d\n", $codepoint, IntlChar::charName($codepoint),
           IntlChar::isalpha($codepoint), IntlChar::charDigitValue($codepoint),
           bin2hex(IntlChar::chr(IntlChar::toupper($codepoint))), IntlChar::charType($codepoint));
}

echo "idn_to_ascii: ", idn_to_ascii('bücher.example'), "\n";
echo "idn_to_utf8: ", idn_to_utf8('xn--bcher-kva.example'), "\n";
echo "idn_to_ascii nontransitional: ", idn_to_ascii('faß.de', IDNA_NONTRANSITIONAL_TO_ASCII), "\n";
echo "idn_to_ascii bad: ", var_export(idn_to_ascii('xn--a.xn--b'), true), "\n";
