"""Keeps secrets out of the webhook: a message whose body contains a configured pattern is
dropped (`action = "drop"`) or has each occurrence masked (`action = "mask"`, the default).

Config: `patterns`, comma-separated words (e.g. `password,api_key`); `action`; `mask` (default
`[redacted]`).
"""

from stanzahook_filter import DROP, PASS, Before, Event, Filter, config, export, log, rewrite


class Redact(Filter):
    """It sees what must stay secret, so it keeps the SDK's default: a fresh instance per stanza,
    nothing left in memory for the next one (see `Filter.reuse`)."""

    def before(self, event: Event) -> Before:
        patterns = [p.strip() for p in config("patterns", "").split(",") if p.strip()]
        body = event.body
        if body is None:
            return PASS
        lower = body.lower()
        if not any(p.lower() in lower for p in patterns):
            return PASS
        if config("action") == "drop":
            log.info("dropped a message with a redacted pattern")
            return DROP
        mask = config("mask", "[redacted]")
        for pattern in patterns:
            body = replace_ignoring_case(body, pattern, mask)
        event.set("body", body)
        # The raw stanza still holds the original text: the webhook must not see it either.
        event.set("stanza", "")
        return rewrite(event)


def replace_ignoring_case(text: str, pattern: str, mask: str) -> str:
    lower = text.lower()
    needle = pattern.lower()
    # Positions found in `lower` are positions in `text` only if lowercasing kept the length.
    if not needle or len(lower) != len(text):
        return text.replace(pattern, mask)
    out = []
    rest = 0
    while (i := lower.find(needle, rest)) != -1:
        out.append(text[rest:i])
        out.append(mask)
        rest = i + len(needle)
    out.append(text[rest:])
    return "".join(out)


WitWorld, Instances = export(Redact())
