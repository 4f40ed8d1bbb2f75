//! What must survive a restart, in one SQLite file in the state directory: the only user of
//! rusqlite: the rooms joined at run time (on an invitation, or through `POST /rooms`; the
//! README's "Group chat"), so that a restart joins them again, and the failed deliveries (the
//! README's "Deliveries"), so that a restart loses none of them. The file is made the first time
//! something is kept; a stanzahook that never keeps anything writes nothing.
//!
//! Calls block on disk: the async thread makes them through `tokio::task::spawn_blocking`, and
//! writes nobody waits for through `write_later`, which `serve` lets finish before the process
//! exits (tokio drops a blocking task still queued when its runtime shuts down).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// The file's name in the state directory.
const FILE: &str = "stanzahook.sqlite3";
/// The schema this build writes; older files are brought up to it when opened.
const SCHEMA_VERSION: i64 = 2;

/// A room joined at run time, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRoom {
    pub jid: String,
    pub nick: String,
    pub address: String,
    pub password: Option<String>,
}

/// A delivery as kept: its row (the delivery's JSON, `deliveries::Delivery::to_row`) and what it
/// was redelivered as.
pub type KeptDelivery = (String, Option<u64>);

/// Which kept deliveries to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    pub before: Option<u64>,
    /// A bare address (every resource) or a full one.
    pub sender: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: usize,
}

/// The state directory's database; opened on first use.
#[derive(Debug)]
pub struct Store {
    dir: Option<PathBuf>,
    conn: Mutex<Option<Connection>>,
    /// Writes under way that nobody waits for (`write_later`).
    pending: tokio_util::task::TaskTracker,
}

impl Store {
    /// A store in `dir`; `None` keeps nothing (`state_dir = "off"`, or no directory known).
    pub fn new(dir: Option<PathBuf>) -> Store {
        Store { dir, conn: Mutex::new(None), pending: tokio_util::task::TaskTracker::new() }
    }

    /// Runs `write` on a blocking thread without waiting for it; `flush` waits for all of them.
    pub fn write_later(self: &std::sync::Arc<Self>, write: impl FnOnce(&Store) + Send + 'static) {
        let store = self.clone();
        self.pending.spawn_blocking(move || write(&store));
    }

    /// Waits until every `write_later` so far is done: the last step before the process exits.
    pub async fn flush(&self) {
        self.pending.close();
        self.pending.wait().await;
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Runs `f` on the database, opening (`create`: or making) it first; `Ok(None)` when there
    /// is no database and `create` is false.
    fn with<R>(&self, create: bool, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> anyhow::Result<Option<R>> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if conn.is_none() {
            let Some(dir) = &self.dir else {
                if create {
                    anyhow::bail!("no state directory (state_dir) to keep it in");
                }
                return Ok(None);
            };
            let path = dir.join(FILE);
            if !create && !path.exists() {
                return Ok(None);
            }
            *conn = Some(open(dir, &path)?);
        }
        let Some(conn) = conn.as_ref() else { return Ok(None) };
        let path = self.dir.as_deref().unwrap_or(Path::new(".")).join(FILE);
        f(conn).map(Some).with_context(|| format!("{}", path.display()))
    }

    /// The rooms kept, oldest first; none when nothing was ever kept.
    pub fn rooms(&self) -> anyhow::Result<Vec<KeptRoom>> {
        let rooms = self.with(false, |conn| {
            let mut query = conn.prepare("SELECT jid, nick, address, password FROM rooms ORDER BY added")?;
            let rows = query.query_map([], |row| {
                Ok(KeptRoom { jid: row.get(0)?, nick: row.get(1)?, address: row.get(2)?, password: row.get(3)? })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rooms.unwrap_or_default())
    }

    /// Keeps `room`, replacing what was kept for its address.
    pub fn keep_room(&self, room: &KeptRoom) -> anyhow::Result<()> {
        self.with(true, |conn| {
            conn.execute(
                "INSERT INTO rooms (jid, nick, address, password, added) VALUES (?1, ?2, ?3, ?4, unixepoch())
                 ON CONFLICT (jid) DO UPDATE SET nick = ?2, address = ?3, password = ?4",
                params![room.jid, room.nick, room.address, room.password],
            )
        })?;
        Ok(())
    }

    /// Forgets the room `jid`; whether it was kept.
    pub fn forget_room(&self, jid: &str) -> anyhow::Result<bool> {
        let removed = self.with(false, |conn| conn.execute("DELETE FROM rooms WHERE jid = ?1", params![jid]))?;
        Ok(removed.unwrap_or(0) > 0)
    }
}

impl Store {
    /// Keeps a failed delivery (`row`, its JSON) until it is pruned.
    pub fn keep_delivery(&self, id: u64, at_ms: i64, sender: &str, row: &str) -> anyhow::Result<()> {
        let bare = crate::stanza::bare(sender);
        self.with(true, |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (id, at_ms, sender, bare, row) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id as i64, at_ms, sender, bare, row],
            )
        })?;
        Ok(())
    }

    /// Records that delivery `id` was redelivered as `new`: true when it was kept and not yet
    /// redelivered (the database decides, so two calls cannot both redeliver it).
    pub fn mark_redelivered(&self, id: u64, new: u64) -> anyhow::Result<bool> {
        let changed = self.with(false, |conn| {
            conn.execute(
                "UPDATE deliveries SET redelivered_as = ?2 WHERE id = ?1 AND redelivered_as IS NULL",
                params![id as i64, new as i64],
            )
        })?;
        Ok(changed.unwrap_or(0) == 1)
    }

    pub fn delivery(&self, id: u64) -> anyhow::Result<Option<KeptDelivery>> {
        let kept = self.with(false, |conn| {
            conn.query_row("SELECT row, redelivered_as FROM deliveries WHERE id = ?1", params![id as i64], kept_row)
                .optional()
        })?;
        Ok(kept.flatten())
    }

    /// Kept deliveries as `query` asks, newest first.
    pub fn deliveries(&self, query: &DeliveryQuery) -> anyhow::Result<Vec<KeptDelivery>> {
        let (full, bare) = match &query.sender {
            Some(s) if s.contains('/') => (Some(s.as_str()), None),
            Some(s) => (None, Some(s.as_str())),
            None => (None, None),
        };
        let kept = self.with(false, |conn| {
            let mut select = conn.prepare_cached(
                "SELECT row, redelivered_as FROM deliveries
                 WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR sender = ?2) AND (?3 IS NULL OR bare = ?3)
                   AND (?4 IS NULL OR at_ms >= ?4) AND (?5 IS NULL OR at_ms <= ?5)
                 ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = select.query_map(
                params![query.before.map(|b| b as i64), full, bare, query.since_ms, query.until_ms, query.limit as i64],
                kept_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(kept.unwrap_or_default())
    }

    /// Forgets the deliveries kept from before `ms` (milliseconds since 1970); how many.
    pub fn prune_deliveries(&self, before_ms: i64) -> anyhow::Result<usize> {
        let pruned =
            self.with(false, |conn| conn.execute("DELETE FROM deliveries WHERE at_ms < ?1", params![before_ms]))?;
        Ok(pruned.unwrap_or(0))
    }
}

/// A `SELECT row, redelivered_as` row as kept.
fn kept_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeptDelivery> {
    Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?.map(|n| n as u64)))
}

/// Opens (or makes) the database at `path` in `dir` and brings its schema up to date. The
/// directory is made readable by this user alone: it holds room passwords.
fn open(dir: &Path, path: &Path) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make the state directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()
        .with_context(|| format!("{} is not a database stanzahook can read", path.display()))?
        .unwrap_or(0);
    if version > SCHEMA_VERSION {
        anyhow::bail!("{} was written by a newer stanzahook (schema {version})", path.display());
    }
    if version < 1 {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rooms (
                 jid TEXT PRIMARY KEY NOT NULL,
                 nick TEXT NOT NULL,
                 address TEXT NOT NULL,
                 password TEXT,
                 added INTEGER NOT NULL
             );
             PRAGMA user_version = 1;",
        )
        .with_context(|| format!("cannot set up {}", path.display()))?;
    }
    if version < 2 {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS deliveries (
                 id INTEGER PRIMARY KEY NOT NULL,
                 at_ms INTEGER NOT NULL,
                 sender TEXT NOT NULL,
                 bare TEXT NOT NULL,
                 row TEXT NOT NULL,
                 redelivered_as INTEGER
             );
             CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at_ms);
             PRAGMA user_version = 2;",
        )
        .with_context(|| format!("cannot set up the deliveries in {}", path.display()))?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(jid: &str) -> KeptRoom {
        KeptRoom { jid: jid.into(), nick: "Bot".into(), address: "bot.example".into(), password: Some("pw".into()) }
    }

    #[test]
    fn rooms_kept_survive_a_new_store_on_the_same_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let store = Store::new(Some(state.clone()));
        assert_eq!(store.rooms().expect("read"), [], "nothing kept, nothing made");
        assert!(!state.exists(), "reading makes no file");
        store.keep_room(&room("a@muc.example")).expect("keep");
        store.keep_room(&room("b@muc.example")).expect("keep");
        store.keep_room(&KeptRoom { nick: "Other".into(), ..room("a@muc.example") }).expect("keep again");
        drop(store);
        let again = Store::new(Some(state));
        let rooms = again.rooms().expect("read");
        assert_eq!(rooms.iter().map(|r| r.jid.as_str()).collect::<Vec<_>>(), ["a@muc.example", "b@muc.example"]);
        assert_eq!(rooms[0].nick, "Other");
        assert!(again.forget_room("a@muc.example").expect("forget"));
        assert!(!again.forget_room("a@muc.example").expect("forget"));
        assert_eq!(again.rooms().expect("read").len(), 1);
    }

    #[test]
    fn without_a_directory_nothing_is_kept_and_saying_so_is_an_error() {
        let store = Store::new(None);
        assert_eq!(store.rooms().expect("read"), []);
        assert!(store.keep_room(&room("a@muc.example")).is_err());
    }

    #[test]
    fn failed_deliveries_are_kept_queried_marked_once_and_pruned_by_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(Some(dir.path().to_owned()));
        assert_eq!(store.deliveries(&DeliveryQuery { limit: 10, ..Default::default() }).expect("read"), []);
        store.keep_delivery(1, 1_000, "a@b/phone", "one").expect("keep");
        store.keep_delivery(2, 2_000, "a@b/laptop", "two").expect("keep");
        store.keep_delivery(3, 3_000, "c@d/x", "three").expect("keep");
        let rows = |q: DeliveryQuery| -> Vec<String> {
            store.deliveries(&DeliveryQuery { limit: 10, ..q }).expect("read").into_iter().map(|(r, _)| r).collect()
        };
        assert_eq!(rows(DeliveryQuery::default()), ["three", "two", "one"]);
        assert_eq!(rows(DeliveryQuery { sender: Some("a@b".into()), ..Default::default() }), ["two", "one"]);
        assert_eq!(rows(DeliveryQuery { sender: Some("a@b/phone".into()), ..Default::default() }), ["one"]);
        assert_eq!(rows(DeliveryQuery { before: Some(3), since_ms: Some(2_000), ..Default::default() }), ["two"]);
        assert!(store.mark_redelivered(2, 9).expect("mark"));
        assert!(!store.mark_redelivered(2, 10).expect("mark"), "only once");
        drop(store);
        let again = Store::new(Some(dir.path().to_owned()));
        assert_eq!(again.delivery(2).expect("read"), Some(("two".into(), Some(9))));
        assert_eq!(again.prune_deliveries(2_500).expect("prune"), 2);
        assert_eq!(rows_of(&again), ["three"]);
    }

    fn rows_of(store: &Store) -> Vec<String> {
        let all = DeliveryQuery { limit: 10, ..Default::default() };
        store.deliveries(&all).expect("read").into_iter().map(|(r, _)| r).collect()
    }

    #[test]
    fn a_file_that_is_no_database_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "not sqlite at all, just text that is long enough").expect("write");
        let store = Store::new(Some(dir.path().to_owned()));
        let e = store.rooms().expect_err("not a database").to_string();
        assert!(e.contains("stanzahook.sqlite3"), "{e}");
    }
}
