"""Makes a chat webhook of another shape work behind stanzahook: the event becomes the
Slack/Mattermost-style `{"text", "user", "channel"}` such a webhook expects (with `thread_ts` for
a reply, `files` for an attachment, and a `reaction_added` event for a reaction), and its answer
`{"text": ...}` becomes stanzahook's `{"body": ...}`.
"""

from stanzahook_filter import PASS, After, Answer, Before, Event, Filter, Json, export, replace, rewrite


class Reshape(Filter):
    def before(self, event: Event) -> Before:
        if event.kind != "message":
            return PASS
        # The bare address names the user; the resource is one of their devices.
        user = (event.from_ or "").split("/")[0]
        channel = event.to or ""
        reactions = event.reactions()
        if reactions is not None:
            reaction_added = {
                "type": "reaction_added",
                "user": user,
                "reaction": reactions.emoji[0] if reactions.emoji else "",
                "item": {"channel": channel, "ts": reactions.id},
            }
            return rewrite(reaction_added)
        # The text without the quote a reply carries for clients that know no replies.
        reshaped: dict[str, Json] = {"text": event.text() or "", "user": user, "channel": channel}
        reply_to = event.reply_to()
        if reply_to is not None:
            reshaped["thread_ts"] = reply_to.id
        file = event.oob()
        if file is not None:
            reshaped["files"] = [{"url_private": file.url, "title": file.desc or ""}]
        return rewrite(reshaped)

    def after(self, event: Event, answer: Answer) -> After:
        text = answer.reply.get("text") if isinstance(answer.reply, dict) else None
        return replace({"body": text}) if isinstance(text, str) else PASS


WitWorld, Instances = export(Reshape())
