#!/usr/bin/env python3
"""An echo bot as a stanzahook webhook, with nothing but Python's standard library.

Run:  python3 echo.py [PORT]        (default port 8080, listens on 127.0.0.1)
Then: stanzahook run ... --post-url http://127.0.0.1:8080/

stanzahook POSTs one JSON object per stanza: {"to", "from", "kind", "stanza", "body"?, ...}.
Answering a JSON object sends a reply (here: the same text back); answering 204 sends nothing.

With STANDARD_WEBHOOKS_SECRET=whsec_... in the environment (the same secret as stanzahook's
[webhook] signing_secrets), each request's Standard Webhooks signature is checked, and a request
that fails the check is answered 401.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("STANDARD_WEBHOOKS_SECRET")
TOLERANCE_SECONDS = 5 * 60


def signature_ok(headers, body):
    """The Standard Webhooks check: HMAC-SHA256 over "id.timestamp.body", any of the v1 signatures."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    if not (msg_id and timestamp.isdigit() and signatures):
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(sig, expected)
        for version, _, sig in (s.partition(",") for s in signatures)
    )


class Echo(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if SECRET and not signature_ok(self.headers, raw):
            sys.stderr.write("echo webhook: rejected a request with a bad signature\n")
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(raw or b"{}")
        sys.stderr.write(f"echo webhook: received {json.dumps(event, ensure_ascii=False)}\n")
        if event.get("kind") == "message" and event.get("body"):
            answer = json.dumps({"body": event["body"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        else:
            # Nothing to echo (a typing notification, a presence, ...): no reply.
            self.send_response(204)
            self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("echo webhook: " + (fmt % args) + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    print(f"echo webhook listening on http://127.0.0.1:{port}/", flush=True)
    server.serve_forever()
