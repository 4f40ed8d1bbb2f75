#!/usr/bin/env python3
"""A group chat bot as a stanzahook webhook, with nothing but Python's standard library.

It answers `!roll` (a die) and `!time` (the time in UTC) in the rooms stanzahook sits in, and
`!help` with what it knows; everything else gets no answer. Run it, then give stanzahook a room:

    python3 roombot.py [PORT]          (default port 8080, listens on 127.0.0.1)

    # stanzahook.toml
    post_url = "http://127.0.0.1:8080/"
    [[room]]
    jid = "dev@conference.example.org"
    nick = "Bot"

A room message arrives as {"type": "groupchat", "room": ..., "nick": ..., "mentioned": ...,
"body": ..., ...}; the answer {"body": ...} goes into the room it came from. stanzahook never
forwards the bot's own messages, so the bot cannot end up talking to itself. Answering 204 sends
nothing.
"""
import json
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMANDS = {
    "!roll": lambda: f"🎲 {random.randint(1, 6)}",
    "!time": lambda: time.strftime("%H:%M UTC", time.gmtime()),
    "!help": lambda: "I answer !roll, !time and !help.",
}


def answer(event):
    """The reply text for an event, or None for no reply."""
    words = (event.get("body") or "").split()
    command = COMMANDS.get(words[0].lower()) if words else None
    return command() if command else None


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        event = json.loads(self.rfile.read(length) or b"{}")
        text = answer(event)
        if text is None:
            self.send_response(204)
            self.end_headers()
            return
        # From a private message through the room, `room` is there too: the answer goes back
        # privately, as stanzahook's default.
        who = event.get("nick", "you")
        reply = json.dumps({"body": text if event.get("type") == "groupchat" else f"{who}: {text}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
