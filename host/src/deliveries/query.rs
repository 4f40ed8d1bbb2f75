//! Which deliveries a `GET /deliveries` asks for: its query string, checked, and the test each
//! delivery passes (pure logic; the database applies the same test in SQL).

use std::collections::HashMap;
use std::time::SystemTime;

use super::record::{Delivery, Status};

/// Deliveries a page shows unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub limit: usize,
    /// Only deliveries older than this one (the `next` of the page before).
    pub before: Option<u64>,
    pub status: Option<Status>,
    /// A full address matches itself; a bare one every resource of it.
    pub sender: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

impl Default for Query {
    fn default() -> Query {
        Query { limit: DEFAULT_LIMIT, before: None, status: None, sender: None, since: None, until: None }
    }
}

impl Query {
    /// The query string's parameters, each checked; the error names the parameter.
    pub fn parse(params: &HashMap<String, String>) -> Result<Query, String> {
        let mut query = Query::default();
        for (key, value) in params {
            let value = value.trim();
            match key.as_str() {
                "limit" => {
                    query.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| (1..=MAX_LIMIT).contains(&n))
                        .ok_or_else(|| format!("`limit` must be a number from 1 to {MAX_LIMIT}, not {value:?}"))?;
                }
                "before" => {
                    query.before =
                        Some(value.parse().map_err(|_| format!("`before` must be a delivery's id, not {value:?}"))?);
                }
                "status" => {
                    query.status = Some(Status::parse(value).ok_or_else(|| {
                        format!("`status` must be delivered, failed, answered, dropped or rejected, not {value:?}")
                    })?);
                }
                "sender" if !value.is_empty() => query.sender = Some(value.to_owned()),
                "sender" => {}
                "since" => query.since = Some(time(value, "since")?),
                "until" => query.until = Some(time(value, "until")?),
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`; the parameters are limit, before, status, sender, since, until"
                    ));
                }
            }
        }
        Ok(query)
    }

    pub fn matches(&self, d: &Delivery) -> bool {
        self.before.is_none_or(|before| d.id < before)
            && self.status.is_none_or(|status| d.status == status)
            && self.sender.as_deref().is_none_or(|sender| sender_matches(sender, &d.sender))
            && self.since.is_none_or(|since| d.at >= since)
            && self.until.is_none_or(|until| d.at <= until)
    }
}

/// `alice@example.org` matches all of Alice's resources; `alice@example.org/phone` only that one.
pub fn sender_matches(asked: &str, sender: &str) -> bool {
    if asked.contains('/') { asked == sender } else { crate::stanza::bare(sender) == asked }
}

/// An RFC 3339 time (`2026-12-02T10:00:00Z`) or seconds since 1970.
pub fn time(value: &str, key: &str) -> Result<SystemTime, String> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds));
    }
    humantime::parse_rfc3339_weak(value)
        .map_err(|_| format!("`{key}` must be a time like 2026-12-02T10:00:00Z (or seconds since 1970), not {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn every_parameter_is_read_and_a_wrong_one_is_named() {
        let q = Query::parse(&params(&[
            ("limit", "10"),
            ("before", "42"),
            ("status", "failed"),
            ("sender", "a@b"),
            ("since", "2026-12-02T10:00:00Z"),
            ("until", "1800000000"),
        ]))
        .expect("valid");
        assert_eq!((q.limit, q.before, q.status), (10, Some(42), Some(Status::Failed)));
        assert!(q.since.is_some() && q.until.is_some());
        for (key, value, named) in [
            ("limit", "0", "`limit`"),
            ("limit", "9999", "`limit`"),
            ("before", "x", "`before`"),
            ("status", "lost", "`status`"),
            ("since", "yesterday", "`since`"),
            ("colour", "red", "`colour`"),
        ] {
            let e = Query::parse(&params(&[(key, value)])).expect_err("refused");
            assert!(e.contains(named), "{e}");
        }
        assert_eq!(Query::parse(&params(&[])).expect("none").limit, DEFAULT_LIMIT);
    }

    #[test]
    fn a_bare_sender_matches_every_resource_and_a_full_one_only_itself() {
        assert!(sender_matches("a@b", "a@b/phone"));
        assert!(sender_matches("a@b", "a@b"));
        assert!(!sender_matches("a@b", "ab@b/phone"));
        assert!(sender_matches("a@b/phone", "a@b/phone"));
        assert!(!sender_matches("a@b/phone", "a@b/laptop"));
    }
}
