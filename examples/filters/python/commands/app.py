"""Answers chat commands itself, without calling the webhook: `/ping` and `/help`. Everything
else goes on to the webhook unchanged.

Config: `prefix` (default `/`).
"""

from stanzahook_filter import PASS, Before, Event, Filter, config, export, reply


class Commands(Filter):
    def before(self, event: Event) -> Before:
        prefix = config("prefix", "/")
        text = (event.body or "").strip()
        if not text.startswith(prefix):
            return PASS
        match text.removeprefix(prefix):
            case "ping":
                return reply("pong")
            case "help":
                return reply(f"Commands: {prefix}ping, {prefix}help. Anything else goes to the bot.")
            case _:
                return PASS

    # Nothing of one stanza stays behind (no globals, no caches), so stanzahook may keep the
    # instance for the next call instead of starting a fresh one: a fresh Python instance is a
    # whole interpreter, and a call in a kept one is over ten times as fast.
    def reuse(self) -> bool:
        return True


WitWorld, Instances = export(Commands())
