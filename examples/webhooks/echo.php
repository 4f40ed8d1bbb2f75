<?php
// An echo bot as a stanzahook webhook, in plain PHP.
//
// Run:  php -S 127.0.0.1:8080 echo.php
// Then: stanzahook run ... --post-url http://127.0.0.1:8080/
//
// stanzahook POSTs one JSON object per stanza: {"to", "from", "kind", "stanza", "body"?, ...}.
// Answering a JSON object sends a reply (here: the same text back); answering 204 sends nothing.

$event = json_decode(file_get_contents('php://input'), true);

if (is_array($event) && ($event['kind'] ?? '') === 'message' && ($event['body'] ?? '') !== '') {
    header('Content-Type: application/json');
    echo json_encode(['body' => $event['body']]);
} else {
    // Nothing to echo (a typing notification, a presence, ...): no reply.
    http_response_code(204);
}
