//! The access log: one Combined Log Format line per request on stdout, written in batches,
//! with every piece of request text escaped ([`LogSafe`]) so no request can forge a line.

use std::io;
use std::time::{Duration, Instant};

use tiny_http::Request;

use crate::dates;
use crate::request::header;

/// One Combined Log Format line.
pub(crate) fn access_line(req: &Request, status: u16, len: Option<u64>) -> String {
    let mut line = String::new();
    write_access_line(&mut line, req, status, len);
    line.pop();
    line
}

/// Text from a request (a URL, a path decoded from one, a header), escaped for a log line
/// as nginx escapes its access log: `"` and `\` get a backslash, and every byte outside
/// printable ASCII is written `\xHH`. A newline (raw, since tiny_http ends a request line
/// only at CRLF, or decoded from `%0a`) can then never start a forged line on stdout or
/// stderr, nor a carriage return or an escape sequence rewrite what a terminal shows.
/// Every log line that prints something a client sent goes through this.
pub(crate) struct LogSafe<'s>(pub &'s str);

impl std::fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0.as_bytes();
        let mut plain = 0;
        for (i, &c) in b.iter().enumerate() {
            if (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\' {
                continue;
            }
            // A run of plain bytes is ASCII, so a non-empty `plain..i` starts and ends on
            // char boundaries; an empty one may sit inside a character being escaped.
            if plain < i {
                f.write_str(&self.0[plain..i])?;
            }
            match c {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                c => write!(f, "\\x{c:02x}")?,
            }
            plain = i + 1;
        }
        f.write_str(&self.0[plain..])
    }
}

/// Appends one Combined Log Format line, with its newline, to `out`. Written in place,
/// without a string per field: it runs for every request.
pub(crate) fn write_access_line(out: &mut String, req: &Request, status: u16, len: Option<u64>) {
    use std::fmt::Write;
    // Quoted fields come from the client: a quote, a backslash or a control character in
    // them could end a field or forge a line, so they are escaped (see [`LogSafe`]).
    let quote = |out: &mut String, s: Option<&str>| match s {
        Some(s) => drop(write!(out, "{}", LogSafe(s))),
        None => out.push('-'),
    };
    match req.remote_addr() {
        Some(a) => drop(write!(out, "{}", a.ip())),
        None => out.push('-'),
    }
    let _ = write!(
        out,
        " - - [{}] \"{} ",
        dates::clf(dates::now()),
        // tiny_http takes any ASCII word as a method, a bare newline included.
        LogSafe(req.method().as_str())
    );
    quote(out, Some(req.url()));
    let _ = write!(out, " HTTP/{}\" {status} ", req.http_version());
    match len {
        Some(n) => drop(write!(out, "{n}")),
        None => out.push('-'),
    }
    out.push_str(" \"");
    quote(out, header(req, "Referer"));
    out.push_str("\" \"");
    quote(out, header(req, "User-Agent"));
    out.push_str("\"\n");
}

/// Access log lines not yet written to stdout. A write per request was 5% of the request
/// loop's time for a page from the page cache, so lines are gathered and written together,
/// as nginx's `access_log … buffer=` does: when 4 KiB have gathered or the oldest line is
/// 200 ms old (the loop looks at least every quarter second), and when the loop stops. A
/// crash loses at most those lines, never anything stored.
#[derive(Default)]
pub(crate) struct AccessLog {
    lines: String,
    since: Option<Instant>,
}

/// Lines still waiting when the loop ends without `Flow::finish` (a panic outside any
/// handler) are written on the way out.
impl Drop for AccessLog {
    fn drop(&mut self) {
        self.write();
    }
}

impl AccessLog {
    const BUFFER: usize = 4096;
    const WAIT: Duration = Duration::from_millis(200);

    pub(crate) fn add(&mut self, req: &Request, status: u16, len: Option<u64>) {
        self.since.get_or_insert_with(Instant::now);
        write_access_line(&mut self.lines, req, status, len);
    }

    pub(crate) fn due(&self) -> bool {
        self.lines.len() >= Self::BUFFER || self.since.is_some_and(|t| t.elapsed() >= Self::WAIT)
    }

    pub(crate) fn write(&mut self) {
        use std::io::Write;
        if self.lines.is_empty() {
            return;
        }
        // One write for every line; a failed one (stdout closed) is not worth a message.
        let _ = io::stdout().lock().write_all(self.lines.as_bytes());
        self.since = None;
        // The buffer keeps its capacity for the next batch, unless a long line grew it.
        if self.lines.capacity() > 2 * Self::BUFFER {
            self.lines = String::new();
        } else {
            self.lines.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_end_a_field_or_a_line() {
        let cases = [
            ("/posts/hello/?q=1", "/posts/hello/?q=1"),
            ("/x\nnib: forged", "/x\\x0anib: forged"),
            ("/x\r\n1.2.3.4 - -", "/x\\x0d\\x0a1.2.3.4 - -"),
            ("a\"b\\c", "a\\\"b\\\\c"),
            ("\x1b[2J\t", "\\x1b[2J\\x09"),
            ("caf\u{e9}", "caf\\xc3\\xa9"),
            ("\u{2028}\u{85}", "\\xe2\\x80\\xa8\\xc2\\x85"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(LogSafe(input).to_string(), want, "{input:?}");
        }
    }
}
