//! One delivery as the log keeps it, and `Record`, which gathers it along a stanza's way. With
//! the log off nothing is gathered: `Record` is then a no-op, like `Way`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio_xmpp::minidom::Element;

use crate::filter::Verdict;
use crate::webhook::{Outcome, Posted};

/// How a delivery ended, as the API and the console name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The webhook answered (2xx) and its answer, if any, was sent.
    Delivered,
    /// The sender got an error because of the webhook: a failed call after its last attempt, an
    /// answer refused, a call abandoned at shutdown. Kept to be redelivered.
    Failed,
    /// A filter answered; no webhook call was made.
    Answered,
    /// A filter dropped the stanza.
    Dropped,
    /// A filter failed with `on_error = "reject"`.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Answered => "answered",
            Status::Dropped => "dropped",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [Status::Delivered, Status::Failed, Status::Answered, Status::Dropped, Status::Rejected]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One filter hook's verdict on the delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub filter: String,
    pub hook: &'static str,
    pub verdict: &'static str,
    pub took: Duration,
}

/// What the log keeps of one delivery. Only `redelivered_as` changes once it is recorded.
#[derive(Debug)]
pub struct Delivery {
    pub id: u64,
    /// When its handling began.
    pub at: SystemTime,
    pub status: Status,
    pub kind: &'static str,
    pub sender: String,
    pub to: String,
    pub stanza_id: Option<String>,
    /// The last HTTP status; 0 when no HTTP answer came or no call was made.
    pub http_status: u16,
    pub attempts: u32,
    pub took: Duration,
    /// From the first attempt to the last answer; `None` when no call was made.
    pub webhook_took: Option<Duration>,
    pub error: Option<String>,
    pub steps: Vec<Step>,
    /// With `keep_bodies`: the JSON text posted, the JSON text answered, the replies sent.
    pub bodies: Option<Bodies>,
    /// The stanza as received, so that it can be redelivered: kept for a failed delivery, and
    /// for every one with `keep_bodies`.
    pub stanza: Option<String>,
    pub redelivery_of: Option<u64>,
    /// 0 until it is redelivered.
    redelivered_as: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bodies {
    pub request: Option<String>,
    pub answer: Option<String>,
    pub replies: Vec<String>,
}

impl Delivery {
    pub fn redelivered_as(&self) -> Option<u64> {
        Some(self.redelivered_as.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    /// Marks it redelivered as `id`; false when it already was.
    pub fn mark_redelivered(&self, id: u64) -> bool {
        self.redelivered_as.compare_exchange(0, id, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// What it takes in memory, near enough for the log's byte bound.
    pub fn size(&self) -> usize {
        let strings = self.sender.len()
            + self.to.len()
            + self.stanza_id.as_ref().map_or(0, String::len)
            + self.error.as_ref().map_or(0, String::len)
            + self.stanza.as_ref().map_or(0, String::len)
            + self.steps.iter().map(|s| s.filter.len() + std::mem::size_of::<Step>()).sum::<usize>();
        let bodies = self.bodies.as_ref().map_or(0, |b| {
            b.request.as_ref().map_or(0, String::len)
                + b.answer.as_ref().map_or(0, String::len)
                + b.replies.iter().map(String::len).sum::<usize>()
                + std::mem::size_of::<Bodies>()
        });
        // The Arc and the log's slot beside the struct.
        std::mem::size_of::<Delivery>() + 32 + strings + bodies
    }

    /// The list's view: how it went, without bodies or steps.
    pub fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "at": humantime::format_rfc3339_millis(self.at).to_string(),
            "status": self.status.as_str(),
            "kind": self.kind,
            "sender": self.sender,
            "to": self.to,
            "stanza_id": self.stanza_id,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "took_ms": millis(self.took),
            "error": self.error,
            "redelivery_of": self.redelivery_of,
            "redelivered_as": self.redelivered_as(),
            "redeliverable": self.stanza.is_some(),
        })
    }

    /// The detail view: the summary, the filters' trail, and the bodies when kept.
    pub fn detail(&self) -> Value {
        let mut detail = self.summary();
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| json!({"filter": s.filter, "hook": s.hook, "verdict": s.verdict, "ms": millis(s.took)}))
            .collect();
        detail["filters"] = steps.into();
        detail["webhook_ms"] = self.webhook_took.map(millis).into();
        detail["bodies"] = self.bodies.is_some().into();
        let bodies = self.bodies.clone().unwrap_or_default();
        detail["request"] = bodies.request.into();
        detail["answer"] = bodies.answer.into();
        detail["replies"] = if self.bodies.is_some() { bodies.replies.into() } else { Value::Null };
        detail
    }

    /// As the database keeps it: the detail view plus the stanza.
    pub fn to_row(&self) -> String {
        let mut row = self.detail();
        row["stanza"] = self.stanza.clone().into();
        row.to_string()
    }

    /// Read back from `to_row`; `None` for a row this build cannot read.
    pub fn from_row(text: &str, redelivered_as: Option<u64>) -> Option<Delivery> {
        let row: Value = serde_json::from_str(text).ok()?;
        let string = |key: &str| row.get(key).and_then(Value::as_str).map(str::to_owned);
        let duration = |key: &str| row.get(key).and_then(Value::as_f64).map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let at = humantime::parse_rfc3339(row.get("at")?.as_str()?).ok()?;
        let kind = match row.get("kind")?.as_str()? {
            "message" => "message",
            "presence" => "presence",
            "iq" => "iq",
            _ => return None,
        };
        let steps = row
            .get("filters")
            .and_then(Value::as_array)
            .map(|steps| {
                steps
                    .iter()
                    .map(|s| Step {
                        filter: s.get("filter").and_then(Value::as_str).unwrap_or("").to_owned(),
                        hook: if s.get("hook").and_then(Value::as_str) == Some("after") { "after" } else { "before" },
                        verdict: known_verdict(s.get("verdict").and_then(Value::as_str).unwrap_or("")),
                        took: Duration::from_secs_f64(s.get("ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let bodies = row.get("bodies").and_then(Value::as_bool).unwrap_or(false).then(|| Bodies {
            request: string("request"),
            answer: string("answer"),
            replies: row
                .get("replies")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        });
        Some(Delivery {
            id: row.get("id")?.as_u64()?,
            at,
            status: Status::parse(row.get("status")?.as_str()?)?,
            kind,
            sender: string("sender")?,
            to: string("to")?,
            stanza_id: string("stanza_id"),
            http_status: row
                .get("http_status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            attempts: row.get("attempts").and_then(Value::as_u64).and_then(|a| u32::try_from(a).ok()).unwrap_or(0),
            took: duration("took_ms").unwrap_or_default(),
            webhook_took: duration("webhook_ms"),
            error: string("error"),
            steps,
            bodies,
            stanza: string("stanza"),
            redelivery_of: row.get("redelivery_of").and_then(Value::as_u64),
            redelivered_as: AtomicU64::new(redelivered_as.unwrap_or(0)),
        })
    }
}

/// The verdict names the chain gives (`BeforeDecision::name`, `AfterDecision::name`, "error"), as
/// `&'static str` again after a round trip through the database.
fn known_verdict(name: &str) -> &'static str {
    ["pass", "rewrite", "answer", "drop", "replace", "error"]
        .into_iter()
        .find(|&known| known == name)
        .unwrap_or("other")
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// A delivery being gathered along a stanza's way; a no-op when the log is off.
#[derive(Debug)]
pub struct Record {
    gathering: Option<Box<Gathering>>,
}

#[derive(Debug)]
struct Gathering {
    id: u64,
    at: SystemTime,
    started: Instant,
    keep_bodies: bool,
    steps: Vec<Step>,
    posted: Option<(u16, u32, Duration)>,
    error: Option<String>,
    request: Option<String>,
    answer: Option<String>,
    redelivery_of: Option<u64>,
}

impl Record {
    pub fn off() -> Record {
        Record { gathering: None }
    }

    pub(super) fn start(id: u64, keep_bodies: bool, redelivery_of: Option<u64>) -> Record {
        Record {
            gathering: Some(Box::new(Gathering {
                id,
                at: SystemTime::now(),
                started: Instant::now(),
                keep_bodies,
                steps: Vec::new(),
                posted: None,
                error: None,
                request: None,
                answer: None,
                redelivery_of,
            })),
        }
    }

    pub fn is_on(&self) -> bool {
        self.gathering.is_some()
    }

    /// Whether the bodies are kept: the caller copies the JSON it posts only then.
    pub fn keeps_bodies(&self) -> bool {
        self.gathering.as_ref().is_some_and(|g| g.keep_bodies)
    }

    pub fn verdicts(&mut self, verdicts: &[Verdict]) {
        if let Some(g) = &mut self.gathering {
            g.steps.extend(verdicts.iter().map(|v| Step {
                filter: v.filter.clone(),
                hook: v.hook,
                verdict: v.outcome,
                took: v.took,
            }));
        }
    }

    /// The JSON text about to be posted; kept only with `keep_bodies` (ask `keeps_bodies` first
    /// to avoid the copy).
    pub fn posting(&mut self, body: String) {
        if let Some(g) = &mut self.gathering
            && g.keep_bodies
        {
            g.request = Some(body);
        }
    }

    pub fn posted(&mut self, posted: &Posted) {
        if let Some(g) = &mut self.gathering {
            g.posted = Some((posted.outcome.status(), posted.attempts, posted.took));
            match &posted.outcome {
                Outcome::Answer(answer) if g.keep_bodies => g.answer = Some(answer.to_string()),
                Outcome::Failed { detail, .. } => g.error = Some(detail.clone()),
                _ => {}
            }
        }
    }

    /// Why the sender got an error, when it is not the call's own failure (a refused answer).
    pub fn failed(&mut self, why: impl FnOnce() -> String) {
        if let Some(g) = &mut self.gathering {
            g.error = Some(why());
        }
    }

    /// The delivery as it ended: `status` given by the pipeline, or worked out (`None`) from the
    /// call and the error noted; `replies` as sent.
    pub fn finish(self, el: &Element, status: Option<Status>, replies: &[Element]) -> Option<Delivery> {
        let g = *self.gathering?;
        let status = status.unwrap_or(match (&g.error, g.posted) {
            (Some(_), _) => Status::Failed,
            (None, Some(_)) => Status::Delivered,
            (None, None) => Status::Answered,
        });
        // A failed delivery keeps its stanza whatever `keep_bodies` says: it was not delivered,
        // and redelivering it needs it (README: "Deliveries").
        let stanza = (status == Status::Failed || g.keep_bodies).then(|| crate::stanza::to_xml_string(el));
        let bodies = g.keep_bodies.then(|| Bodies {
            request: g.request,
            answer: g.answer,
            replies: replies.iter().map(crate::stanza::to_xml_string).collect(),
        });
        let (http_status, attempts, webhook_took) = match g.posted {
            Some((status, attempts, took)) => (status, attempts, Some(took)),
            None => (0, 0, None),
        };
        Some(Delivery {
            id: g.id,
            at: g.at,
            status,
            kind: crate::stanza::Kind::of(el).map_or("message", |k| k.as_str()),
            sender: el.attr("from").unwrap_or("").to_owned(),
            to: el.attr("to").unwrap_or("").to_owned(),
            stanza_id: el.attr("id").map(str::to_owned),
            http_status,
            attempts,
            took: g.started.elapsed(),
            webhook_took,
            error: g.error,
            steps: g.steps,
            bodies,
            stanza,
            redelivery_of: g.redelivery_of,
            redelivered_as: AtomicU64::new(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Element {
        crate::stanza::parse_received("<message from='a@b/c' to='bot@x' id='m1' type='chat'><body>hi</body></message>")
            .expect("stanza")
    }

    fn posted(outcome: Outcome) -> Posted {
        Posted { outcome, content_type: None, took: Duration::from_millis(12), attempts: 3 }
    }

    #[test]
    fn without_bodies_a_delivered_stanza_keeps_how_it_went_and_nothing_it_said() {
        let mut record = Record::start(7, false, None);
        record.posting("{\"body\":\"hi\"}".into());
        record.posted(&posted(Outcome::Answer(json!({"body": "hello"}))));
        let d = record.finish(&message(), None, &[]).expect("on");
        assert_eq!((d.status, d.http_status, d.attempts), (Status::Delivered, 200, 3));
        assert!(d.bodies.is_none() && d.stanza.is_none());
        let detail = d.detail().to_string();
        assert!(!detail.contains("hi\"") && !detail.contains("hello"), "{detail}");
    }

    #[test]
    fn a_failed_delivery_keeps_its_stanza_and_survives_the_round_trip_through_a_row() {
        let mut record = Record::start(8, false, Some(3));
        record.posted(&posted(Outcome::Failed {
            status: 503,
            error: crate::stanza::StanzaError::new(crate::stanza::ErrorType::Wait, "service-unavailable"),
            detail: "webhook answered HTTP 503".into(),
        }));
        let d = record.finish(&message(), None, &[]).expect("on");
        assert_eq!(d.status, Status::Failed);
        assert!(d.stanza.as_deref().is_some_and(|s| s.contains("<body>hi</body>")));
        let back = Delivery::from_row(&d.to_row(), Some(9)).expect("readable");
        assert_eq!(
            (back.id, back.status, back.redelivery_of, back.redelivered_as()),
            (8, Status::Failed, Some(3), Some(9))
        );
        assert_eq!(back.stanza, d.stanza);
        assert_eq!(back.error.as_deref(), Some("webhook answered HTTP 503"));
        assert!(!back.mark_redelivered(10), "already redelivered");
    }

    #[test]
    fn with_bodies_the_request_answer_and_replies_are_kept() {
        let mut record = Record::start(1, true, None);
        record.posting("{\"body\":\"hi\"}".into());
        record.posted(&posted(Outcome::Answer(json!({"body": "hello"}))));
        let reply = crate::stanza::parse_received("<message to='a@b/c' from='bot@x'><body>hello</body></message>")
            .expect("reply");
        let d = record.finish(&message(), None, &[reply]).expect("on");
        let detail = d.detail();
        assert_eq!(detail["request"], "{\"body\":\"hi\"}");
        assert_eq!(detail["answer"], "{\"body\":\"hello\"}");
        assert!(detail["replies"][0].as_str().is_some_and(|r| r.contains("hello")));
        assert!(d.size() > d.stanza.as_ref().map_or(0, String::len));
    }

    #[test]
    fn the_log_off_gathers_nothing() {
        let mut record = Record::off();
        record.failed(|| unreachable!("not asked when off"));
        assert!(record.finish(&message(), None, &[]).is_none());
    }
}
