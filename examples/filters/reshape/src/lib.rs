//! Makes a chat webhook of another shape work behind stanzahook: the event becomes the
//! Slack/Mattermost-style `{"text", "user", "channel"}` such a webhook expects (with
//! `thread_ts` for a reply, `files` for an attachment, and a `reaction_added` event for a
//! reaction), and its answer `{"text": ...}` becomes stanzahook's `{"body": ...}`.

use stanzahook_guest::{After, Answer, Before, Event, Filter, Result, export_filter, json};

struct Reshape;

impl Filter for Reshape {
    fn before(event: Event) -> Result<Before> {
        if event.kind() != Some("message") {
            return Ok(Before::Pass);
        }
        let user = event.from().unwrap_or_default();
        // The bare address names the user; the resource is one of their devices.
        let user = user.split('/').next().unwrap_or_default();
        let channel = event.to().unwrap_or_default();
        if let Some(reactions) = event.reactions() {
            let reshaped = json!({
                "type": "reaction_added",
                "user": user,
                "reaction": reactions.emoji.first().copied().unwrap_or_default(),
                "item": { "channel": channel, "ts": reactions.id },
            });
            return Ok(Before::Rewrite(Event::new(reshaped)));
        }
        // The text without the quote a reply carries for clients that know no replies.
        let mut reshaped = json!({ "text": event.text().unwrap_or_default(), "user": user, "channel": channel });
        if let Some(reply) = event.reply_to() {
            reshaped["thread_ts"] = reply.id.into();
        }
        if let Some(file) = event.oob() {
            reshaped["files"] = json!([{ "url_private": file.url, "title": file.desc.unwrap_or_default() }]);
        }
        Ok(Before::Rewrite(Event::new(reshaped)))
    }

    fn after(_event: Event, answer: Answer) -> Result<After> {
        let text = answer.reply.as_ref().and_then(|r| r.get("text")).and_then(|t| t.as_str());
        Ok(match text {
            Some(text) => After::Replace(json!({ "body": text })),
            None => After::Pass,
        })
    }
}

export_filter!(Reshape);
