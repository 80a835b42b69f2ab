//! The two error types of nib: [`StartupError`] for everything that stops the program
//! before it serves (bad flags, bad config, a database that will not open), and [`Error`]
//! for what goes wrong while answering one request. Each request error knows its HTTP
//! status in one place, [`Error::status`]; internal errors keep their cause (its chain is
//! logged) and send a generic body so nothing about the server leaks to a client.

use std::fmt;

/// Any error, kept as the cause of ours.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Writes `e` and every cause below it, `: `-separated, as one log line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // A cause some wrapper already quoted is not repeated.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// A problem found before the server answers anything. Printed on stderr by `main`, which
/// maps it to an exit code.
#[derive(Debug)]
pub enum StartupError {
    /// Wrong command-line usage: exit code 2, like most Unix tools.
    Usage(String),
    /// A bad `nib.toml` key or value, or a bad flag/environment value.
    Config(String),
    /// The database could not be opened, migrated, copied or restored: what was being done,
    /// and why it failed.
    Db { doing: String, cause: Cause },
    /// Anything else that stops start-up (binding the socket, reading the site).
    Other(String),
}

impl StartupError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartupError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Usage(m) => write!(f, "{m}"),
            StartupError::Config(m) => write!(f, "config: {m}"),
            // `main` prints one line: the cause goes with it.
            StartupError::Db { doing, cause } => write!(f, "database: {doing}: {cause}"),
            StartupError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for StartupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartupError::Db { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

impl StartupError {
    /// A database failure while `doing` something.
    pub(crate) fn db(doing: impl Into<String>, cause: impl Into<Cause>) -> StartupError {
        StartupError::Db {
            doing: doing.into(),
            cause: cause.into(),
        }
    }
}

impl From<rusqlite::Error> for StartupError {
    fn from(e: rusqlite::Error) -> Self {
        StartupError::db("query", e)
    }
}

/// A problem answering one request. The message of every variant but `Internal` is shown
/// to the client, so it must say what was wrong with the request and nothing else.
#[derive(Debug)]
pub(crate) enum Error {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound,
    MethodNotAllowed,
    Conflict(String),
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    /// The request body did not arrive within the deadline.
    RequestTimeout,
    /// The request line is over 8 KiB.
    UriTooLong,
    /// The request line and headers are over 8 KiB.
    HeaderTooLarge,
    /// The handler has passed its checks and needs the request body, which the loop has
    /// not read yet: it is read off the loop, then the handler runs again with it. Never
    /// sent to a client.
    NeedBody,
    /// The database or another resource is unavailable; the server itself is fine.
    Unavailable(Cause),
    /// A bug or an I/O failure; logged in full, with its causes, never shown.
    Internal(Cause),
}

impl Error {
    /// The one place where an error becomes an HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge => 413,
            Error::UnsupportedMediaType => 415,
            Error::TooManyRequests => 429,
            Error::RequestTimeout => 408,
            Error::UriTooLong => 414,
            Error::HeaderTooLarge => 431,
            Error::Unavailable(_) => 503,
            Error::NeedBody => 500,
            Error::Internal(_) => 500,
        }
    }

    /// What the client is told: never the internal cause.
    pub fn public_message(&self) -> String {
        match self {
            Error::BadRequest(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::Conflict(m) => m.clone(),
            Error::NotFound => "not found".into(),
            Error::MethodNotAllowed => "method not allowed".into(),
            Error::PayloadTooLarge => "request body over 64 KiB".into(),
            Error::UnsupportedMediaType => "unsupported content type".into(),
            Error::TooManyRequests => "too many attempts, try again later".into(),
            Error::RequestTimeout => "the request body did not arrive in time".into(),
            Error::UriTooLong => "request line over 8 KiB".into(),
            Error::HeaderTooLarge => "request header block over 8 KiB".into(),
            Error::NeedBody => "internal server error".into(),
            Error::Unavailable(_) => "service unavailable".into(),
            Error::Internal(_) => "internal server error".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(_) => write!(f, "internal error"),
            Error::Unavailable(_) => write!(f, "unavailable"),
            other => write!(f, "{}", other.public_message()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Internal(c) | Error::Unavailable(c) => Some(c.as_ref()),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Error::Unavailable(Box::new(e))
            }
            _ => Error::Internal(Box::new(e)),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(Box::new(e))
    }
}

impl From<askama::Error> for Error {
    fn from(e: askama::Error) -> Self {
        Error::Internal(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_cause_for_the_log_and_hide_it_from_clients() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::from(io);
        assert_eq!(e.status(), 500);
        assert_eq!(e.public_message(), "internal server error");
        assert_eq!(chain(&e), "internal error: disk on fire");
        let e = StartupError::db("opening nib.db", std::io::Error::other("no space"));
        assert_eq!(e.to_string(), "database: opening nib.db: no space");
        assert_eq!(chain(&e), "database: opening nib.db: no space");
    }
}
