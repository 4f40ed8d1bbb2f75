#!/usr/bin/env python3
"""An echo bot as a stanzahook webhook, with nothing but Python's standard library.

Run:  python3 echo.py [PORT]        (default port 8080, listens on 127.0.0.1)
Then: stanzahook run ... --post-url http://127.0.0.1:8080/

stanzahook POSTs one JSON object per stanza: {"to", "from", "kind", "stanza", "body"?, ...}.
Answering a JSON object sends a reply (here: the same text back); answering 204 sends nothing.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        event = json.loads(self.rfile.read(length) or b"{}")
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
