//! The two error types of nib: [`StartupError`] for everything that stops the program
//! before it serves (bad flags, bad config, a database that will not open), and [`Error`]
//! for what goes wrong while answering one request. Each request error knows its HTTP
//! status in one place, [`Error::status`]; internal errors log their cause and send a
//! generic body so nothing about the server leaks to a client.

use std::fmt;

/// A problem found before the server answers anything. Printed on stderr by `main`, which
/// maps it to an exit code.
#[derive(Debug)]
pub enum StartupError {
    /// Wrong command-line usage: exit code 2, like most Unix tools.
    Usage(String),
    /// A bad `nib.toml` key or value, or a bad flag/environment value.
    Config(String),
    /// The database could not be opened or migrated.
    Db(String),
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
            StartupError::Db(m) => write!(f, "database: {m}"),
            StartupError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for StartupError {}

impl From<rusqlite::Error> for StartupError {
    fn from(e: rusqlite::Error) -> Self {
        StartupError::Db(e.to_string())
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
    Unavailable(String),
    /// A bug or an I/O failure; logged in full, never shown.
    Internal(String),
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
            Error::Internal(m) | Error::Unavailable(m) => write!(f, "{m}"),
            other => write!(f, "{}", other.public_message()),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Error::Unavailable(format!("database: {e}"))
            }
            _ => Error::Internal(format!("database: {e}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("io: {e}"))
    }
}

impl From<askama::Error> for Error {
    fn from(e: askama::Error) -> Self {
        Error::Internal(format!("template: {e}"))
    }
}
