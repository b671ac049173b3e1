<?php
header('X-Kiln-Method: ' . $_SERVER['REQUEST_METHOD']);
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    http_response_code(201);
    echo "posted greeting=", $_POST['greeting'] ?? '(none)', "\n";
} else {
    echo "query name=", $_GET['name'] ?? '(none)', " n=", $_GET['n'] ?? '(none)', "\n";
}
