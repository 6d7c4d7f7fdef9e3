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
    /// The database could not be reached in time (pool timeout, connection refused or lost).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else; logged with its cause chain, never shown to a client.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// A copy for each caller of a batched write that failed (`sqlx::Error` is not `Clone`):
    /// the same variant, the cause kept as text.
    pub fn for_each_caller(&self) -> StoreError {
        match self {
            StoreError::NotFound => StoreError::NotFound,
            StoreError::Conflict(c) => StoreError::Conflict(c.clone()),
            StoreError::Unavailable(e) => {
                StoreError::Unavailable(sqlx::Error::Protocol(e.to_string()))
            }
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
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e),
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}
