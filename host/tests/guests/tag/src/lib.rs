//! Marks the order of the chain: `before` appends its `tag` setting to the message body, `after`
//! appends it in lower case to the reply's body, and each hook logs what it did. It keeps nothing
//! between stanzas, so it allows reuse when its `reuse` setting is `yes` (the benchmarks measure
//! both ways).
use stanzahook_guest::{After, Answer, Before, Event, Filter, Result, Value, config, export_filter, log};

struct Tag;

fn tag() -> String {
    config("tag").unwrap_or_else(|| "?".into())
}

impl Filter for Tag {
    fn before(mut event: Event) -> Result<Before> {
        let body = format!("{}{}", event.body().unwrap_or_default(), tag());
        log::info(format!("before: body now {body}"));
        event.set("body", body);
        Ok(Before::Rewrite(event))
    }

    fn after(_event: Event, answer: Answer) -> Result<After> {
        let Some(mut reply) = answer.reply else { return Ok(After::Pass) };
        let body = reply.get("body").and_then(Value::as_str).unwrap_or_default();
        let body = format!("{body}{}", tag().to_lowercase());
        log::info(format!("after (status {}): body now {body}", answer.status));
        reply["body"] = Value::String(body);
        Ok(After::Replace(reply))
    }

    fn reuse() -> bool {
        config("reuse").as_deref() == Some("yes")
    }
}

export_filter!(Tag);
