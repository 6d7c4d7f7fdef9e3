//! The store's error type: what callers may act on, and everything else as an opaque cause.

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or belongs to another tenant (the two are indistinguishable).
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; names the constraint.
    #[error("conflict on {0}")]
    Conflict(String),
    /// The database could not be reached in time (pool timeout, connection refused or lost,
    /// the server shutting down or starting up, an I/O error).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The disk under the database is full; the write was rolled back whole.
    #[error("database storage full")]
    Full(#[source] sqlx::Error),
    /// Anything else; logged with its cause chain, never shown to a client.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// The database could not take the operation now (unreachable, or its disk full): the same
    /// operation may succeed later, unlike one the database refused for what it is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_))
    }

    /// A copy for each caller of a batched write that failed (`sqlx::Error` is not `Clone`):
    /// the same variant, the cause kept as text.
    pub fn for_each_caller(&self) -> StoreError {
        match self {
            StoreError::NotFound => StoreError::NotFound,
            StoreError::Conflict(c) => StoreError::Conflict(c.clone()),
            StoreError::Unavailable(e) => {
                StoreError::Unavailable(sqlx::Error::Protocol(e.to_string()))
            }
            StoreError::Full(e) => StoreError::Full(sqlx::Error::Protocol(e.to_string())),
            StoreError::Other(e) => StoreError::Other(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(ref db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or("unique").to_string())
            }
            sqlx::Error::Database(ref db) => match db.code().as_deref().map(classify) {
                Some(Class::Full) => StoreError::Full(e),
                Some(Class::Unavailable) => StoreError::Unavailable(e),
                _ => StoreError::Other(anyhow::Error::new(e)),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e),
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}

enum Class {
    Full,
    Unavailable,
    Other,
}

/// Sorts a database error code: PostgreSQL's SQLSTATE (always five characters, often all
/// digits, such as `53100`), or SQLite's (extended) result code as a number (at most four
/// digits: the largest extended code is below 10,000).
fn classify(code: &str) -> Class {
    if code.len() != 5
        && let Ok(n) = code.parse::<u32>()
    {
        // The primary result code is the low byte of an extended one.
        return match n & 0xff {
            13 => Class::Full, // SQLITE_FULL
            // SQLITE_BUSY and SQLITE_LOCKED (the write lock was not free within busy_timeout),
            // SQLITE_IOERR, SQLITE_CANTOPEN: conditions a later retry may not meet.
            5 | 6 | 10 | 14 => Class::Unavailable,
            _ => Class::Other,
        };
    }
    match code {
        "53100" => Class::Full, // disk_full
        // too_many_connections, connection exceptions, admin/crash shutdown, cannot connect now
        c if c == "53300" || c.starts_with("08") || c.starts_with("57P") => Class::Unavailable,
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::{Class, classify};

    #[test]
    fn database_codes_sort_into_full_unavailable_and_other() {
        for full in ["13", "53100"] {
            assert!(matches!(classify(full), Class::Full), "{full}");
        }
        // SQLITE_IOERR_WRITE (778) and SQLITE_IOERR_FSYNC (1034) are I/O errors.
        for down in [
            "5", "6", "517", "10", "778", "1034", "14", "57P01", "57P03", "08006", "08001", "53300",
        ] {
            assert!(matches!(classify(down), Class::Unavailable), "{down}");
        }
        for other in ["1", "19", "2067", "23505", "42P01", "40001", ""] {
            assert!(matches!(classify(other), Class::Other), "{other}");
        }
    }
}
