//! The ratings database, `DIR/ratings.sqlite`: raters, their rounds and their ratings.
//!
//! SQLite in WAL mode with `synchronous = FULL`: every rating is one transaction that is on
//! disk before the server answers, so an acknowledged rating survives `kill -9` (and a
//! power cut). A rating is unique per round item, so a retried request never doubles it.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::error::{Result, WebError};
use crate::round::{ItemKind, RoundConfig, RoundItem, Scale};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY,
    expertise TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS round_items (
    rater TEXT NOT NULL REFERENCES raters(name),
    position INTEGER NOT NULL,
    token TEXT NOT NULL UNIQUE,
    map TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (rater, position)
);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL REFERENCES raters(name),
    token TEXT NOT NULL UNIQUE REFERENCES round_items(token),
    score INTEGER NOT NULL,
    morphology INTEGER NOT NULL,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
";

/// A stored rating as the rater sees it (the token, never the map).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingRow {
    pub id: i64,
    pub rater: String,
    pub map: String,
    pub position: usize,
    pub score: i64,
    pub morphology: bool,
    pub created: String,
}

/// A stored rating with everything the analysis needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FullRating {
    pub id: i64,
    pub rater: String,
    pub expertise: String,
    pub position: usize,
    pub kind: ItemKind,
    pub token: String,
    pub map: String,
    pub score: i64,
    pub morphology: bool,
    pub created: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rater {
    pub name: String,
    pub expertise: String,
    pub done: usize,
    pub total: usize,
}

/// Why a rating was refused (a 4xx with this text).
#[derive(Debug, thiserror::Error)]
pub enum RatingRefusal {
    #[error("unknown rater `{0}`: start a round first (POST /api/raters)")]
    UnknownRater(String),
    #[error("map `{map}` is not in the round of rater `{rater}`")]
    NotInRound { rater: String, map: String },
    #[error("map `{0}` is already rated")]
    AlreadyRated(String),
    #[error(transparent)]
    Store(#[from] WebError),
}

fn db_error(path: &Path, source: rusqlite::Error) -> WebError {
    WebError::Db {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = |source| db_error(path, source);
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn db(&self, source: rusqlite::Error) -> WebError {
        db_error(&self.path, source)
    }

    /// Records the scale and round settings on first use; later starts must use the same,
    /// so that all raters of a database rated on one scale and one sample.
    pub fn check_settings(&self, scale: &Scale, round: &RoundConfig) -> Result<()> {
        for (key, value) in [
            ("scale", serde_json::to_string(scale).expect("serialisable")),
            ("round", serde_json::to_string(round).expect("serialisable")),
        ] {
            let stored: Option<String> = self
                .conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| self.db(e))?;
            match stored {
                Some(s) if s != value => {
                    return Err(WebError::invalid(
                        &self.path,
                        format!(
                            "the ratings were made with {key} {s}; this start asks for {value} \
                             (use the same options, or another folder for a new study of ratings)"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    self.conn
                        .execute(
                            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                            [key, &value],
                        )
                        .map_err(|e| self.db(e))?;
                }
            }
        }
        Ok(())
    }

    /// The stored scale, if the database has one (for `ratings summary`).
    pub fn stored_scale(&self) -> Result<Option<Scale>> {
        let s: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'scale'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.db(e))?;
        s.map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| WebError::invalid(&self.path, format!("stored scale: {e}")))
        })
        .transpose()
    }

    pub fn rater(&self, name: &str) -> Result<Option<Rater>> {
        self.conn
            .query_row(
                "SELECT r.name, r.expertise,
                    (SELECT count(*) FROM ratings g WHERE g.rater = r.name),
                    (SELECT count(*) FROM round_items i WHERE i.rater = r.name)
                 FROM raters r WHERE r.name = ?1",
                [name],
                |r| {
                    Ok(Rater {
                        name: r.get(0)?,
                        expertise: r.get(1)?,
                        done: r.get::<_, i64>(2)? as usize,
                        total: r.get::<_, i64>(3)? as usize,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Adds a rater with their round (one transaction); an existing rater is returned as is.
    pub fn add_rater(&mut self, name: &str, expertise: &str, items: &[RoundItem]) -> Result<Rater> {
        if let Some(r) = self.rater(name)? {
            return Ok(r);
        }
        let db = |source| db_error(&self.path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        tx.execute(
            "INSERT INTO raters (name, expertise) VALUES (?1, ?2)",
            [name, expertise],
        )
        .map_err(db)?;
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO round_items (rater, position, token, map, kind) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db)?;
            for it in items {
                ins.execute(params![
                    name,
                    it.position as i64,
                    it.token,
                    it.map,
                    it.kind.as_str()
                ])
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(self.rater(name)?.expect("just inserted"))
    }

    fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoundItem> {
        let kind: String = r.get(3)?;
        Ok(RoundItem {
            position: r.get::<_, i64>(0)? as usize,
            token: r.get(1)?,
            map: r.get(2)?,
            kind: ItemKind::parse(&kind).unwrap_or(ItemKind::Main),
        })
    }

    /// The first item of the rater's round not rated yet (`None`: the round is finished).
    pub fn next_item(&self, rater: &str) -> Result<Option<RoundItem>> {
        self.conn
            .query_row(
                "SELECT i.position, i.token, i.map, i.kind FROM round_items i
                 WHERE i.rater = ?1 AND NOT EXISTS (SELECT 1 FROM ratings g WHERE g.token = i.token)
                 ORDER BY i.position LIMIT 1",
                [rater],
                Self::item_from_row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The item behind a token, with its rater.
    pub fn item(&self, token: &str) -> Result<Option<(String, RoundItem)>> {
        self.conn
            .query_row(
                "SELECT position, token, map, kind, rater FROM round_items WHERE token = ?1",
                [token],
                |r| Ok((r.get(4)?, Self::item_from_row(r)?)),
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// Stores one rating in its own transaction (on disk when this returns).
    pub fn add_rating(
        &mut self,
        rater: &str,
        token: &str,
        score: i64,
        morphology: bool,
    ) -> std::result::Result<RatingRow, RatingRefusal> {
        let db = |source| RatingRefusal::Store(db_error(&self.path, source));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let known: bool = tx
            .query_row("SELECT 1 FROM raters WHERE name = ?1", [rater], |_| Ok(()))
            .optional()
            .map_err(db)?
            .is_some();
        if !known {
            return Err(RatingRefusal::UnknownRater(rater.to_string()));
        }
        let position: Option<i64> = tx
            .query_row(
                "SELECT position FROM round_items WHERE token = ?1 AND rater = ?2",
                [token, rater],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        let Some(position) = position else {
            return Err(RatingRefusal::NotInRound {
                rater: rater.to_string(),
                map: token.to_string(),
            });
        };
        let rated: bool = tx
            .query_row(
                "SELECT 1 FROM ratings WHERE token = ?1",
                [token],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some();
        if rated {
            return Err(RatingRefusal::AlreadyRated(token.to_string()));
        }
        let row = tx
            .query_row(
                "INSERT INTO ratings (rater, token, score, morphology) VALUES (?1, ?2, ?3, ?4)
                 RETURNING id, created",
                params![rater, token, score, morphology],
                |r| {
                    Ok(RatingRow {
                        id: r.get(0)?,
                        rater: rater.to_string(),
                        map: token.to_string(),
                        position: position as usize,
                        score,
                        morphology,
                        created: r.get(1)?,
                    })
                },
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(row)
    }

    /// Every rating with its rater, item and map, in the order they were stored.
    pub fn all_ratings(&self) -> Result<Vec<FullRating>> {
        self.ratings(None)
    }

    /// The ratings of one rater, in the order of their round.
    pub fn ratings_of(&self, rater: &str) -> Result<Vec<FullRating>> {
        self.ratings(Some(rater))
    }

    /// Every rating (`None`) or one rater's, in storage order (`None`) or round order.
    fn ratings(&self, rater: Option<&str>) -> Result<Vec<FullRating>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT g.id, g.rater, r.expertise, i.position, i.kind, g.token, i.map, g.score,
                        g.morphology, g.created
                 FROM ratings g JOIN round_items i ON i.token = g.token
                 JOIN raters r ON r.name = g.rater
                 WHERE ?1 IS NULL OR g.rater = ?1
                 ORDER BY CASE WHEN ?1 IS NULL THEN g.id ELSE i.position END",
            )
            .map_err(|e| self.db(e))?;
        let rows = st
            .query_map([rater], |r| {
                let kind: String = r.get(4)?;
                Ok(FullRating {
                    id: r.get(0)?,
                    rater: r.get(1)?,
                    expertise: r.get(2)?,
                    position: r.get::<_, i64>(3)? as usize,
                    kind: ItemKind::parse(&kind).unwrap_or(ItemKind::Main),
                    token: r.get(5)?,
                    map: r.get(6)?,
                    score: r.get(7)?,
                    morphology: r.get(8)?,
                    created: r.get(9)?,
                })
            })
            .map_err(|e| self.db(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db(e))
    }
}

/// The ratings as CSV, one row per rating, with the map's model, image and method.
pub fn ratings_csv(rows: &[FullRating]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "rater",
        "expertise",
        "position",
        "kind",
        "item",
        "map",
        "model",
        "stem",
        "method",
        "score",
        "morphology",
        "created",
    ])
    .expect("writing CSV to memory");
    for r in rows {
        let mut parts = r.map.splitn(3, '/');
        let (model, stem, method) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        w.write_record([
            r.id.to_string().as_str(),
            &r.rater,
            &r.expertise,
            &r.position.to_string(),
            r.kind.as_str(),
            &r.token,
            &r.map,
            model,
            stem,
            method,
            &r.score.to_string(),
            if r.morphology { "true" } else { "false" },
            &r.created,
        ])
        .expect("writing CSV to memory");
    }
    w.into_inner().expect("in-memory writer")
}
