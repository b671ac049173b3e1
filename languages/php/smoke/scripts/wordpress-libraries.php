<?php
// The wordpress flavour's libraries at work: SQLite through both APIs on a file in a granted
// folder (dot-file locking), zlib, libxml2 (DOM, XPath, SimpleXML, XMLWriter, XMLReader),
// mbstring (iconv: its own check). Each line prints only when its round trip gave the expected result.
$path = '/tmp/kiln-smoke.sqlite';

$db = new SQLite3($path);
$db->exec('CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL)');
$insert = $db->prepare('INSERT INTO posts (title) VALUES (:title)');
foreach (['Hello world!', 'Sample Page'] as $title) {
    $insert->bindValue(':title', $title, SQLITE3_TEXT);
    $insert->execute();
}
$db->close();
echo 'sqlite3 ', SQLite3::version()['versionString'], "\n";

$pdo = new PDO('sqlite:' . $path, null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$count = $pdo->query('SELECT COUNT(*) FROM posts')->fetchColumn();
// WordPress's SQLite plugin relies on double-quoted string literals being accepted.
$dq = $pdo->query('SELECT "double-quoted"')->fetchColumn();
$pdo->beginTransaction();
$pdo->exec("UPDATE posts SET title = 'Hello again' WHERE id = 2");
$pdo->commit();
$second = $pdo->query('SELECT title FROM posts WHERE id = 2')->fetchColumn();
if ($count == 2 && $dq === 'double-quoted' && $second === 'Hello again') {
    echo "pdo_sqlite ok\n";
}

$text = str_repeat('WordPress on SQLite in WebAssembly. ', 200);
if (gzuncompress(gzcompress($text, 9)) === $text && gzdecode(gzencode($text)) === $text
    && strlen(gzcompress($text)) < strlen($text) / 10) {
    echo 'zlib ', ZLIB_VERSION, " ok\n";
}

$doc = new DOMDocument();
$doc->loadXML('<rss><channel><item id="1"><title>Hello world!</title></item></channel></rss>');
$xpath = new DOMXPath($doc);
$title = $xpath->query('//item[@id="1"]/title')->item(0)->textContent;
$simple = simplexml_load_string('<post status="publish"><title>Sample</title></post>');
$writer = new XMLWriter();
$writer->openMemory();
$writer->startElement('feed');
$writer->writeAttribute('lang', 'en');
$writer->writeElement('entry', 'x & y');
$writer->endElement();
$written = $writer->outputMemory();
$reader = new XMLReader();
$reader->XML($written);
$names = [];
while ($reader->read()) {
    if ($reader->nodeType === XMLReader::ELEMENT) {
        $names[] = $reader->name;
    }
}
if ($title === 'Hello world!' && (string) $simple['status'] === 'publish'
    && $written === '<feed lang="en"><entry>x &amp; y</entry></feed>' && $names === ['feed', 'entry']) {
    echo 'libxml ', LIBXML_DOTTED_VERSION, " dom ok\n";
}

if (mb_strlen('héllo wörld') === 11 && mb_strtoupper('é') === 'É') {
    echo "mbstring ok\n";
}
echo "libraries ok\n";
