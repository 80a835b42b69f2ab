//! Turning content into bytes: markdown into HTML (once per file change, never per
//! request), the askama page templates, the Atom, RSS and JSON feeds and the sitemap. Everything
//! here is a pure function of its arguments, so `nib serve` and `nib build` produce the
//! same bytes for the same content.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use askama::Template;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd, html};

use crate::dates;
use crate::db::PostRow;
use crate::shortcodes::{self, Templates, fence_open};

/// Escapes text for HTML and XML bodies and attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The output of rendering one post body.
pub(crate) struct Rendered {
    /// The page; or, when it was handed on as it was written (see [`Spill`]), its first
    /// [`KEPT`] bytes, which hold what is cut from it below.
    pub html: String,
    /// Whether the page was handed on, so `html` is only its beginning.
    pub handed_on: bool,
    /// The page's length and hash, whether it was kept or handed on.
    pub len: usize,
    pub hash: u64,
    /// Where `<!-- more -->` begins in the page, when the marker is there.
    more_at: Option<usize>,
    /// The HTML of the first paragraph (empty when there is none).
    pub first_paragraph: String,
    /// The `src` of the page's first `<img>` (see [`first_image`]).
    pub first_image: Option<String>,
}

impl Rendered {
    /// The HTML of what stands before `<!-- more -->`, when the marker is there (and, in a
    /// page handed on, within what was kept). Cut from the page rather than kept beside
    /// it, so the caller decides when to copy it (a post drops its source text first).
    /// Shortcodes shown as text (unknown ones) are left out at its start.
    pub fn summary(&self) -> Option<&str> {
        self.more_at
            .filter(|at| *at <= self.html.len())
            .map(|at| after_shortcodes(&self.html[..at]))
            .filter(|s| !s.trim().is_empty())
    }
}

/// The largest character boundary of `s` at or before `at` (its end, when shorter).
fn char_floor(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Where a page too long to keep goes as it is written: a part at a time, in order. The
/// error is one line, and ends the rendering.
pub(crate) type Spill<'s> = &'s mut dyn FnMut(&str) -> Result<(), String>;

/// How much of a page is held before it is handed on, when it may be (see [`Out`]). Each
/// part handed on is copied twice more by SQLite as it is stored, so parts are small.
const HAND_ON_AT: usize = 32 * 1024;

/// How much of the beginning of a page handed on is kept: a summary (before `<!-- more
/// -->`) or a first paragraph that ends past it is not one a front page could show.
const KEPT: usize = 16 * 1024;

const MORE: &str = "<!-- more -->";

/// `html` past the shortcodes shown as text at its start (each a block of its own, see
/// `shortcodes`), so no summary starts with one.
fn after_shortcodes(html: &str) -> &str {
    let mut rest = html;
    while let Some(r) = rest.trim_start().strip_prefix(shortcodes::SHOWN_OPEN) {
        match r.find("</p>") {
            Some(end) => rest = &r[end + "</p>".len()..],
            None => break,
        }
    }
    rest.trim_start_matches('\n')
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_SMART_PUNCTUATION
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_MATH
}

/// The most events read ahead to name one heading, and the most of its text an id is made
/// from. A heading's events wait in a buffer until its id is known, so a setext heading a
/// megabyte long would otherwise be held as a megabyte of events; real headings stay far
/// below both limits and keep the ids they always had.
const HEADING_LOOKAHEAD: usize = 1024;
const HEADING_TEXT_MAX: usize = 4096;

/// The ids a page's headings use, and for each base id the next suffix to try.
///
/// Without the counter, `n` headings with the same text tried `base`, `base-1`, ...
/// from the start each time: 20,000 empty `#` lines held the loop for 32 s. The suffixes
/// skipped are all taken already and stay taken, so resuming gives the same ids.
#[derive(Default)]
struct HeadingIds {
    used: HashSet<String>,
    next: HashMap<String, usize>,
}

impl HeadingIds {
    /// Adds a piece's explicit `{#id}`s, which generated ids must not take.
    fn take_explicit(&mut self, e: &Event<'_>) {
        if let Event::Start(Tag::Heading { id: Some(id), .. }) = e {
            self.used.insert(id.to_string());
        }
    }

    /// A unique id for a heading with this text (`## Why SQLite?` → `why-sqlite`).
    fn make(&mut self, text: &str) -> String {
        let base = match crate::routes::slugify(text) {
            s if s.is_empty() => "section".to_string(),
            s => s,
        };
        if self.used.insert(base.clone()) {
            return base;
        }
        let n = self.next.entry(base.clone()).or_insert(1);
        loop {
            let id = format!("{base}-{n}");
            *n += 1;
            if self.used.insert(id.clone()) {
                return id;
            }
        }
    }
}

/// Where the HTML writer writes: a `String` holding the page, whose length so far it
/// publishes (in the `Cell` the event stream below shares) so the stream knows where in
/// the page each event begins; and, when the caller gives a [`Spill`], past
/// [`HAND_ON_AT`] bytes the page goes on to it in parts, and a copy of the page's first
/// [`KEPT`] bytes is all that stays. A large post's page then never exists whole in memory: a post of
/// highlighted code has a page of three to four times its size.
struct Out<'a, 's> {
    /// What is not yet handed on: the whole page, if none is.
    html: String,
    /// The first [`KEPT`] bytes of a page handed on.
    kept: String,
    /// Bytes handed on.
    handed: usize,
    hash: crate::hash::Fnv,
    /// The first image of the parts handed on, once one has held an `<img `.
    first_image: Option<String>,
    image_seen: bool,
    spill: Option<Spill<'s>>,
    /// Why the spill failed.
    failed: Option<String>,
    len: &'a Cell<usize>,
}

impl Out<'_, '_> {
    /// Hands on what is held, up to its last `<` (all of it when `all`): a tag the writer
    /// makes is never cut in two (raw HTML with a `<` inside an attribute may be), so each
    /// part can be searched for the first image, and a part always ends on a character
    /// boundary.
    fn hand_on(&mut self, all: bool) -> Result<(), String> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        if self.handed == 0 {
            self.kept = self.html[..char_floor(&self.html, KEPT)].to_string();
        }
        let cut = match self.html.rfind('<') {
            Some(at) if at > 0 && !all => at,
            _ => self.html.len(),
        };
        let part = &self.html[..cut];
        spill(part)?;
        // As in a page kept whole, only the first `<img ` counts, even without a `src`.
        if !self.image_seen && part.contains("<img ") {
            self.image_seen = true;
            self.first_image = first_image(part);
        }
        self.handed += cut;
        self.html.drain(..cut);
        Ok(())
    }
}

impl fmt::Write for Out<'_, '_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        self.hash.write(s.as_bytes());
        if self.spill.is_none() {
            self.html.push_str(s);
            self.len.set(self.html.len());
            return Ok(());
        }
        // A long write (a code block too long to highlight comes whole) is taken a
        // part at a time, so no part handed on is much longer than `HAND_ON_AT`: each is
        // copied twice more by SQLite as it is stored.
        while !s.is_empty() {
            let end = char_floor(s, KEPT);
            self.html.push_str(&s[..end]);
            s = &s[end..];
            if self.html.len() >= HAND_ON_AT {
                self.hand_on(false).map_err(|e| {
                    self.failed = Some(e);
                    fmt::Error
                })?;
            }
        }
        self.len.set(self.handed + self.html.len());
        Ok(())
    }
}

/// The parser's events on their way to the HTML writer: headings get ids, code blocks in a
/// known language their highlighting, footnotes their prefix and links both ways (the
/// number of a note leads back to where it was first cited), and the positions of the first paragraph and of `<!-- more -->` in the
/// output are noted as they pass. The writer asks for an event only once it has written
/// the one before, so `len` is then where the next one begins.
struct Stream<'a, 'l, I: Iterator<Item = Event<'a>>> {
    events: I,
    /// A heading's events, read ahead to make its id.
    ahead: VecDeque<Event<'a>>,
    ids: HeadingIds,
    len: &'l Cell<usize>,
    /// Where the first paragraph begins, and where it ends once known.
    paragraph: Option<(usize, Option<usize>)>,
    /// The first paragraph's end was just handed over: it ends where the next event begins.
    paragraph_closing: bool,
    /// Where the last event began, when it opened an HTML block.
    html_block_at: Option<usize>,
    /// Where the summary ends: before the first `<!-- more -->` HTML block.
    more_at: Option<usize>,
    /// Footnote numbers by name, in the order the notes are first met, as the HTML writer
    /// would number them; and the notes cited so far (the first citation gets the id a
    /// note's number links back to).
    footnotes: HashMap<String, usize>,
    cited: HashSet<String>,
    /// Whether the table start next read back from `ahead` has had its wrapper written.
    table_wrapped: bool,
}

impl<'a, I: Iterator<Item = Event<'a>>> Stream<'a, '_, I> {
    /// A fenced code block in a language nib highlights, read whole (its text events) and
    /// given as one HTML event; other code blocks pass through as they are. A block longer
    /// than [`HIGHLIGHT_MOST`] is shown without colours: what was read of it goes out
    /// escaped in the opening event, and the text that would pass the limit, the rest and
    /// the block's end pass through to the writer as in any code block.
    fn highlight_code(&mut self, lang: &str) -> Event<'a> {
        let mut out = String::from("<pre tabindex=\"0\"><code class=\"language-");
        out.push_str(&escape(lang.split([' ', ',']).next().unwrap_or("")));
        out.push_str("\">");
        let mut code = String::new();
        for e in self.events.by_ref() {
            match e {
                Event::Text(t) => {
                    if code.len() + t.len() > HIGHLIGHT_MOST {
                        // The block's text usually comes as one event: it goes back to the
                        // writer, which escapes it straight into the page.
                        out.push_str(&escape(&code));
                        self.ahead.push_front(Event::Text(t));
                        return Event::Html(CowStr::from(out));
                    }
                    code.push_str(&t);
                }
                Event::End(TagEnd::CodeBlock) => break,
                _ => {}
            }
        }
        out.reserve(code.len() * 2 + 16);
        crate::highlight::highlight(lang, &code, &mut out);
        out.push_str("</code></pre>\n");
        Event::Html(CowStr::from(out))
    }

    /// A footnote's number: the one it has, or the next.
    fn footnote_number(&mut self, name: &str) -> usize {
        let next = self.footnotes.len() + 1;
        *self.footnotes.entry(name.to_string()).or_insert(next)
    }

    /// Reads a heading's events ahead, up to [`HEADING_LOOKAHEAD`], and gives it an id.
    fn name_heading(&mut self, start: Event<'a>) -> Event<'a> {
        let Event::Start(Tag::Heading {
            level,
            id: None,
            classes,
            attrs,
        }) = start
        else {
            return start;
        };
        let mut text = String::new();
        while self.ahead.len() < HEADING_LOOKAHEAD {
            let Some(e) = self.events.next() else { break };
            let end = matches!(e, Event::End(TagEnd::Heading(_)));
            if let Event::Text(t) | Event::Code(t) = &e
                && text.len() < HEADING_TEXT_MAX
            {
                text.push_str(t);
            }
            self.ahead.push_back(e);
            if end {
                break;
            }
        }
        if text.len() > HEADING_TEXT_MAX {
            text.truncate(char_floor(&text, HEADING_TEXT_MAX));
        }
        Event::Start(Tag::Heading {
            level,
            id: Some(CowStr::from(self.ids.make(&text))),
            classes,
            attrs,
        })
    }
}

impl<'a, I: Iterator<Item = Event<'a>>> Stream<'a, '_, I> {
    /// Whether the next event is text that starts with a digit (read ahead, not taken).
    fn digit_follows(&mut self) -> bool {
        if self.ahead.is_empty() {
            match self.events.next() {
                Some(e) => self.ahead.push_back(e),
                None => return false,
            }
        }
        matches!(self.ahead.front(), Some(Event::Text(t)) if t.starts_with(|c: char| c.is_ascii_digit()))
    }
}

impl<'a, I: Iterator<Item = Event<'a>>> Iterator for Stream<'a, '_, I> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        let at = self.len.get();
        if std::mem::take(&mut self.paragraph_closing)
            && let Some((_, end)) = &mut self.paragraph
        {
            *end = Some(at);
        }
        let mut e = match self.ahead.pop_front() {
            Some(e) => e,
            None => match self.events.next()? {
                e @ Event::Start(Tag::Heading { id: None, .. }) => self.name_heading(e),
                e => e,
            },
        };
        // A math span closed by a `$` with a digit after it is two prices, `$5-$10`: text
        // again, as Pandoc reads it (the closing `$` of math is never before a digit).
        if let Event::InlineMath(m) = &e
            && self.digit_follows()
        {
            e = Event::Text(CowStr::from(format!("${m}$")));
        }
        // Footnote ids are prefixed, so a footnote called `intro` cannot take the id of a
        // heading `# Intro`. (Listing pages show summaries, which rarely carry footnotes;
        // two posts' `[^1]` on one listing page would still share an id.)
        match &mut e {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang)))
                if crate::highlight::knows(lang) =>
            {
                let lang = lang.to_string();
                e = self.highlight_code(&lang);
            }
            // A code block or a table wider than the column scrolls inside itself, so it
            // takes the keyboard focus (as Hugo's code blocks do) for a reader without a
            // pointer to scroll it; a table scrolls in a wrapper, which keeps the parser's
            // writer of its cells (and their alignment) as it is.
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info.split(' ').next().unwrap_or(""),
                    CodeBlockKind::Indented => "",
                };
                e = Event::Html(CowStr::from(if lang.is_empty() {
                    "<pre tabindex=\"0\"><code>".to_string()
                } else {
                    format!(
                        "<pre tabindex=\"0\"><code class=\"language-{}\">",
                        escape(lang)
                    )
                }));
            }
            Event::Start(Tag::Table(_)) if !std::mem::take(&mut self.table_wrapped) => {
                self.table_wrapped = true;
                self.ahead.push_front(std::mem::replace(
                    &mut e,
                    Event::Html(CowStr::from(
                        "<div class=\"table-scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Table\">\n",
                    )),
                ));
            }
            Event::End(TagEnd::Table) => {
                self.ahead.push_front(Event::Html(CowStr::from("</div>\n")))
            }
            // A task's box is shown, never used: its name says whether the task is done.
            Event::TaskListMarker(done) => {
                e = Event::InlineHtml(CowStr::from(if *done {
                    "<input disabled=\"\" type=\"checkbox\" checked=\"\" aria-label=\"Done\">\n"
                } else {
                    "<input disabled=\"\" type=\"checkbox\" aria-label=\"Not done\">\n"
                }));
            }
            Event::FootnoteReference(name) => {
                let n = self.footnote_number(name);
                let name = escape(name);
                let id = if self.cited.insert(name.clone()) {
                    format!(" id=\"fnref-{name}\"")
                } else {
                    String::new()
                };
                e = Event::InlineHtml(CowStr::from(format!(
                    "<sup class=\"footnote-reference\"><a{id} href=\"#fn-{name}\">{n}</a></sup>"
                )));
            }
            Event::Start(Tag::FootnoteDefinition(name)) => {
                let n = self.footnote_number(name);
                let name = escape(name);
                let label = if self.cited.contains(&name) {
                    format!("<a href=\"#fnref-{name}\" title=\"Back to the text\">{n}</a>")
                } else {
                    n.to_string()
                };
                e = Event::Html(CowStr::from(format!(
                    "<div class=\"footnote-definition\" id=\"fn-{name}\"><sup class=\"footnote-definition-label\">{label}</sup>"
                )));
            }
            Event::End(TagEnd::FootnoteDefinition) => e = Event::Html(CowStr::from("</div>\n")),
            Event::Start(Tag::Paragraph) if self.paragraph.is_none() => {
                self.paragraph = Some((at, None))
            }
            Event::End(TagEnd::Paragraph) if matches!(self.paragraph, Some((_, None))) => {
                self.paragraph_closing = true
            }
            // The marker counts only as an HTML block of its own (a line by itself, outside
            // code), as Zola and Hugo read it; the parser already knows what is code.
            Event::Html(t) if self.more_at.is_none() && t.trim() == MORE => {
                self.more_at = Some(self.html_block_at.unwrap_or(at))
            }
            _ => {}
        }
        self.html_block_at = matches!(e, Event::Start(Tag::HtmlBlock)).then_some(at);
        Some(e)
    }
}

/// The longest code block highlighted. Highlighting holds a block's text and its coloured
/// copy (two to three times its size) at once: an 887 KB block took 6 MB. A block longer
/// than this is shown as it is, as a long file's view on a forge is.
const HIGHLIGHT_MOST: usize = 64 * 1024;

/// How long a piece of a body is before it may end (see [`pieces`]). The parser's tree of
/// one piece is alive while the page written so far and the post's text are: measured on
/// 880 KB of prose, 64 KB pieces had a tree of 0.8 MB at the end, 16 KB pieces a fifth of
/// that, for no measurable time.
const PIECE_LEN: usize = 16 * 1024;

/// The memory one parse may take, whatever the size of the post: about the whole resident
/// set nib keeps while serving, so a post at its worst doubles it for a moment. A post
/// whose parse would take more than this and more than three times its own size is refused
/// (see [`parse_cost`]).
const PARSE_MOST: usize = 4 << 20;

/// What the parser's tree takes for each line and each inline mark outside fenced code.
/// Measured per 100,000 in one block: paragraph lines 103 bytes, list items 163, quote
/// lines 106, `*a*` 212 (two marks), `` `a` `` 237, `[a](b)` 300, table rows `|a|b|` 279
/// (four marks), HTML block lines 55, lines of fenced code 10.
const MARK_COST: usize = 128;

/// The bytes that may each start a node of the parser's tree: emphasis, code spans, links
/// and images, table cells, HTML and entities, escapes, strikethrough and math.
const MARKS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let marks = b"*_`[]|<&!\\~$";
    while i < marks.len() {
        t[marks[i] as usize] = true;
        i += 1;
    }
    t
};

/// What one line outside fenced code adds to the parser's tree, estimated in bytes
/// ([`MARK_COST`] a node): a node for its text and the break after it, one for each
/// container it opens (`>`, or a list item's `-`, `+`, `*` or `1.`; nested items on one
/// line are one each) and one for each inline mark. A blank line adds none.
fn line_cost(line: &str) -> usize {
    let t = line.trim();
    if t.is_empty() {
        return 0;
    }
    let mut rest = t;
    let mut containers = 0;
    loop {
        let r = rest.trim_start_matches([' ', '\t']);
        let Some(marker) = container_marker(r.as_bytes()) else {
            break;
        };
        containers += 1;
        rest = &r[marker..];
    }
    let marks = t.bytes().filter(|b| MARKS[usize::from(*b)]).count();
    MARK_COST * (1 + containers + marks)
}

/// The length of the container marker `b` starts with: a quote's `>`, or a list item's
/// `-`, `+`, `*` or `1.` / `1)` when a blank or the line's end follows it.
fn container_marker(b: &[u8]) -> Option<usize> {
    if b.first() == Some(&b'>') {
        return Some(1);
    }
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let marker = if matches!(b.first(), Some(b'-' | b'+' | b'*')) {
        1
    } else if (1..=9).contains(&digits) && matches!(b.get(digits), Some(b'.' | b')')) {
        digits + 1
    } else {
        return None;
    };
    matches!(b.get(marker), None | Some(b' ' | b'\t')).then_some(marker)
}

/// What parsing `text` as one document takes in memory, estimated line by line
/// ([`line_cost`]; a line of fenced code an eighth of a node). pulldown-cmark
/// builds its tree of the whole text before the first event, and a single paragraph of
/// 480,000 one-letter lines (937 KB) took 51 MB: that shape cannot be cut into pieces that
/// parse alike, so it is measured before it is parsed.
fn parse_cost(text: &str) -> usize {
    let mut cost = 0;
    let mut fence: Option<(u8, usize)> = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start_matches(' ');
        let f = fence_open(t.trim_end()).filter(|_| line.len() - t.len() <= 3);
        match fence {
            Some((c, n)) => {
                if f.is_some_and(|(tc, tn)| tc == c && tn >= n) {
                    fence = None;
                }
                cost += MARK_COST / 8;
            }
            None => {
                fence = f;
                cost += line_cost(line);
            }
        }
    }
    cost
}

/// Refuses a text whose parse would take more than [`PARSE_MOST`] and three times its
/// body's size: the error names the size and says how to mend it.
fn parse_within(text: &str, body_len: usize) -> Result<(), String> {
    let most = PARSE_MOST.max(3 * body_len);
    // A text of `most / MARK_COST` bytes or less cannot cost more, however dense.
    if text.len() <= most / MARK_COST {
        return Ok(());
    }
    let cost = parse_cost(text);
    if cost <= most {
        return Ok(());
    }
    Err(format!(
        "{} KB of it parse as one piece, taking about {} MB (at most {} MB); headings, or blank lines before paragraphs that start with a letter, let nib split it (a fence indented in a list keeps a post whole)",
        text.len().div_ceil(1024),
        cost.div_ceil(1 << 20),
        most.div_ceil(1 << 20)
    ))
}

/// Whether an HTML block opened by `t` (a line starting with `<`) runs past blank lines
/// until an end marker, and that marker if so (the kinds 1 to 5 of CommonMark, told apart
/// generously: any `<!`, `<?` or `<pre`-like start counts).
fn html_end(t: &str) -> Option<&'static [&'static str]> {
    let lower = |n: usize| t.get(..n).map(str::to_ascii_lowercase);
    if t.starts_with("<!--") {
        Some(&["-->"])
    } else if t.starts_with("<![CDATA[") {
        Some(&["]]>"])
    } else if t.starts_with("<?") {
        Some(&["?>"])
    } else if t.starts_with("<!") {
        Some(&[">"])
    } else if ["<pre", "<script", "<style", "<textarea"]
        .iter()
        .any(|tag| lower(tag.len()).as_deref() == Some(tag))
    {
        Some(&["</pre>", "</script>", "</style>", "</textarea>"])
    } else {
        None
    }
}

/// Cuts `body` into pieces of at least `at_least` bytes (or of an estimated tree of 16
/// times that, see [`parse_cost`]) that each parse exactly as they do within the whole, so each gets a parser of its own: the parser builds a tree of all
/// it is given before its first event, so a piece at a time keeps one piece's tree
/// alive, not the whole body's (1.7 MB for 1 MB of prose).
///
/// A piece ends only where nothing before can go on: before an ATX heading at the start
/// of a line (unless a table may be open: a table runs on to a blank line, and the parser
/// lays out its last row by what follows), or before a line that starts with a letter
/// after a blank line (which ends every paragraph, list, quote, table and HTML block of
/// the kinds that end at a blank line), outside fenced code and HTML blocks that run past
/// blank lines. A body with a fence or such an HTML block indented one to three spaces
/// (maybe in a list item, maybe not) is one piece. Link reference and footnote
/// definitions reach the whole body: see [`with_definitions`].
///
/// A long table is cut too, between two rows, once its piece's tree would pass that size:
/// the piece after the cut is parsed after a copy of the table's header and delimiter row
/// (its `head`), and the events that join the two parts into one table are dropped (see
/// [`piece_events`]). Only a table that stands alone at the margin is cut: after a blank
/// line, outside fences and HTML blocks, in a body with no `]:` (no link reference or
/// footnote definitions), with a head that parses as a table's, and only between lines
/// that are surely rows ([`table_row`]). A table of 3,000 rows took 1.2 MB to parse
/// whole, one of 30,000 rows 11 MB.
///
/// Also says whether the body ends inside a fence or an HTML block.
fn pieces(body: &str, at_least: usize) -> (Vec<Piece<'_>>, bool) {
    // A piece also ends at its first such place once its tree would pass 16 bytes for each
    // of those bytes (256 KB for 16 KB), so a dense stretch is cut up early.
    let most_cost = at_least.saturating_mul(16);
    let one = |body| {
        (
            vec![Piece {
                text: body,
                head: None,
            }],
            false,
        )
    };
    // A body whose tree could not pass four times that, however dense (8 KB for 16 KB
    // pieces), is one piece without a look at its lines: most posts are, and reading
    // them line by line first cost a cold start of 10,000 posts a tenth of its time.
    if body.len().saturating_mul(MARK_COST) <= most_cost.saturating_mul(4) {
        return one(body);
    }
    // A long table is cut sooner: the rest of a table cut in two is parsed from a copy,
    // and its events, with a copy of each cell's text, are kept until written (see
    // [`piece_events_alone`]): measured, four times the tree's estimate.
    let most_table_cost = most_cost / 16;
    let mut cost = 0;
    // The header and delimiter row of the table open here, when it may be cut; whether
    // that head was checked by a parse (only once a cut is wanted); where its rows begin.
    let (mut head, mut head_checked, mut rows_from): (Option<&str>, bool, usize) = (None, false, 0);
    // The head of the piece begun at `start`, when it goes on with a table cut before it.
    let mut start_head = None;
    // Of the line before this one (a table's header, when this one is its delimiter row):
    // where it began, whether a blank line stood before it, and whether it began outside
    // fences and HTML blocks.
    let (mut prev_at, mut prev_after_blank, mut prev_in_text) = (0, false, false);
    // A piece parsed after a copy of its table's head could not see definitions made
    // elsewhere; `]:` anywhere (a link reference or footnote definition, maybe) rules
    // table cuts out.
    let may_cut_tables = !body.contains("]:");
    enum In {
        /// Outside fences and HTML blocks that run past blank lines; in what may be an
        /// HTML block that ends at the next blank line, when set.
        Text {
            html: bool,
        },
        Fence(u8, usize),
        /// An HTML block that runs until a line holds one of these.
        Html(&'static [&'static str]),
    }
    let mut out = Vec::new();
    // The body's start stands as a blank line does (a table may begin there).
    let (mut start, mut at, mut after_blank) = (0, 0, true);
    // Whether a table may be open: it runs on to a blank line, through a heading too.
    let mut table = false;
    let mut state = In::Text { html: false };
    for line in body.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        let t = text.trim_start_matches(' ');
        let indent = text.len() - t.len();
        let blank = t.trim().is_empty();
        let hashes = t.bytes().take_while(|b| *b == b'#').count();
        let heading = (1..=6).contains(&hashes)
            && (t.len() == hashes || t[hashes..].starts_with([' ', '\t']));
        let fence = fence_open(t).filter(|_| indent <= 3);
        let in_text = matches!(state, In::Text { html: false });
        state = match state {
            In::Fence(c, n) => {
                let closes = fence.is_some_and(|(tc, tn)| tc == c && tn >= n)
                    && t.trim_start_matches(c as char).trim().is_empty();
                if closes {
                    In::Text { html: false }
                } else {
                    In::Fence(c, n)
                }
            }
            // A fence seen inside what was taken for an HTML block: not worth telling apart.
            In::Html(_) if fence.is_some() => return one(body),
            In::Html(ends) if ends.iter().any(|e| text.to_ascii_lowercase().contains(e)) => {
                In::Text { html: false }
            }
            In::Html(ends) => In::Html(ends),
            In::Text { html } => {
                let html = html && !blank;
                // A delimiter row: only `|`, `-`, `:` and blanks (most lines fail at once).
                let delimiter_row = !blank
                    && t.bytes()
                        .all(|b| matches!(b, b'|' | b'-' | b':' | b' ' | b'\t'))
                    && t.contains('|')
                    && t.contains('-');
                let alone = prev_after_blank && prev_in_text && !html && indent == 0;
                if !table && delimiter_row && may_cut_tables && alone {
                    // The line before (the header) and this one, if they stand alone as a
                    // table at the margin. The header may start with a digit (`1 | 2`),
                    // which may also be a list item's: the parse that checks the head
                    // before the first cut tells them apart.
                    let header = &body[prev_at..at];
                    let at_margin = header.starts_with(|c: char| c == '|' || c.is_alphanumeric());
                    head = at_margin.then_some(&body[prev_at..at + line.len()]);
                    head_checked = false;
                    rows_from = at + line.len();
                }
                table = !blank && (table || delimiter_row);
                // Past a line that may not be a row, the table may have ended: it is not
                // cut again.
                if !table || (at >= rows_from && !(indent == 0 && table_row(t))) {
                    head = None;
                }
                let starts_block = !html
                    && indent == 0
                    && ((heading && !table)
                        || (after_blank && t.starts_with(|c: char| c.is_alphabetic())));
                // A row of a long table, past its delimiter row.
                let row = table
                    && indent == 0
                    && cost >= most_table_cost
                    && head.is_some()
                    && at >= rows_from
                    && at > start;
                if starts_block && (at - start >= at_least || cost >= most_cost) {
                    out.push(Piece {
                        text: &body[start..at],
                        head: start_head,
                    });
                    (start, start_head, cost) = (at, None, 0);
                } else if row {
                    if !head_checked {
                        head = head.filter(|h| parses_as_table_head(h));
                        head_checked = true;
                    }
                    if head.is_some() {
                        out.push(Piece {
                            text: &body[start..at],
                            head: start_head,
                        });
                        (start, start_head, cost) = (at, head, 0);
                    }
                }
                match fence {
                    Some(_) if indent > 0 || html => return one(body),
                    Some((c, n)) => In::Fence(c, n),
                    None if t.starts_with('<') && indent <= 3 => match html_end(t) {
                        Some(_) if indent > 0 => return one(body),
                        Some(ends)
                            if ends.iter().any(|e| text.to_ascii_lowercase().contains(e)) =>
                        {
                            In::Text { html }
                        }
                        Some(ends) => In::Html(ends),
                        None => In::Text { html: true },
                    },
                    None => In::Text { html },
                }
            }
        };
        cost += match state {
            In::Fence(..) => MARK_COST / 8,
            _ => line_cost(line),
        };
        (prev_at, prev_after_blank, prev_in_text) = (at, after_blank, in_text);
        after_blank = blank;
        at += line.len();
    }
    out.push(Piece {
        text: &body[start..],
        head: start_head,
    });
    (out, !matches!(state, In::Text { .. }))
}

/// One piece of a body (see [`pieces`]): its text, and for the later part of a table cut
/// in two, the header and delimiter row it is parsed after.
#[derive(Clone, Copy, Debug)]
struct Piece<'a> {
    text: &'a str,
    head: Option<&'a str>,
}

/// Whether a line at the margin inside a table is surely one more row of it: it holds a
/// cell (a line of only `|` and blanks ends a table) and cannot begin another block (a
/// quote, heading, HTML block, fence, list item or thematic break, which end a table).
fn table_row(t: &str) -> bool {
    let b = t.as_bytes();
    let rule = b.len() >= 3
        && matches!(b[0], b'-' | b'*' | b'_')
        && b.iter().all(|c| *c == b[0] || matches!(c, b' ' | b'\t'));
    b.iter().any(|c| !matches!(c, b'|' | b' ' | b'\t'))
        && !matches!(b.first(), Some(b'#' | b'<' | b'=' | b'\t'))
        && container_marker(b).is_none()
        && !rule
        && fence_open(t).is_none()
}

/// Whether `head` (a header line and a delimiter row) parses as the head of a table, and
/// as nothing else: then rows parsed after a copy of it are laid out as in the whole.
fn parses_as_table_head(head: &str) -> bool {
    let mut events = Parser::new_ext(head, options());
    matches!(events.next(), Some(Event::Start(Tag::Table(_))))
        && events
            .skip_while(|e| !matches!(e, Event::End(TagEnd::TableHead)))
            .nth(1)
            .is_some_and(|e| matches!(e, Event::End(TagEnd::Table)))
}

/// Whether `text` may hold a heading with an explicit id: a line that ends in an
/// attribute block with a `#` in it (`## Title {#id}`). Only then is it parsed once more,
/// before rendering, to learn the ids generated ones must keep clear of.
fn may_name_ids(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_end();
        l.ends_with('}') && l.rfind('{').is_some_and(|at| l[at..].contains('#'))
    })
}

/// The most text of link reference and footnote definitions copied after each piece.
const DEFINITIONS_MAX: usize = 16 * 1024;

/// The link reference and footnote definitions of each piece, as text, found in one more
/// pass over the pieces that may hold one, which also notes their explicit heading ids.
/// A piece is parsed followed by the other pieces' definitions, so its links and footnote
/// references resolve as in the whole body (see [`piece_events`]).
///
/// The pieces become one (the whole body) when the copies would be large, when a label is
/// defined twice (the first definition wins in the whole body, which copies cannot
/// follow), or when the body ends inside a fence or HTML block (which would swallow the
/// copies).
#[allow(clippy::type_complexity)] // A one-off shape; an alias would hide what it holds.
fn with_definitions<'a>(
    body: &'a str,
    pieces: Vec<Piece<'a>>,
    open_at_end: bool,
    ids: &mut HeadingIds,
) -> Result<(Vec<Piece<'a>>, Vec<Vec<&'a str>>), String> {
    // The body becomes one piece only if it may be parsed whole.
    let whole = |ids: &mut HeadingIds| {
        parse_within(body, body.len())?;
        if may_name_ids(body) {
            for e in Parser::new_ext(body, options()) {
                ids.take_explicit(&e);
            }
        }
        Ok((
            vec![Piece {
                text: body,
                head: None,
            }],
            vec![Vec::new()],
        ))
    };
    let has_definitions = body.contains("]:");
    if pieces.len() == 1 || (has_definitions && open_at_end) {
        return whole(ids);
    }
    let mut found: Vec<Vec<&str>> = Vec::with_capacity(pieces.len());
    let mut labels = HashSet::new();
    let mut total = 0;
    for &Piece { text: piece, head } in &pieces {
        let mut defs = Vec::new();
        if let Some(head) = head {
            // The rest of a table cut in two, in a body with no definitions (see
            // [`pieces`]): parsed as in the whole, after its table's head, for ids only.
            if may_name_ids(piece) {
                for e in Parser::new_ext(&format!("{head}{piece}"), options()) {
                    ids.take_explicit(&e);
                }
            }
        } else if may_name_ids(piece) || (has_definitions && piece.contains("]:")) {
            let mut parser = Parser::new_ext(piece, options()).into_offset_iter();
            // Where the outermost footnote definition open began, and how many are open.
            let (mut footnote_at, mut depth) = (0, 0);
            for (e, range) in &mut parser {
                ids.take_explicit(&e);
                match e {
                    Event::Start(Tag::FootnoteDefinition(label)) => {
                        if !labels.insert(format!("^{}", label.to_lowercase())) {
                            return whole(ids);
                        }
                        if depth == 0 {
                            footnote_at = range.start;
                        }
                        depth += 1;
                    }
                    Event::End(TagEnd::FootnoteDefinition) => {
                        depth -= 1;
                        if depth == 0 {
                            defs.push(&piece[footnote_at..range.end]);
                        }
                    }
                    _ => {}
                }
            }
            for (label, def) in parser.reference_definitions().iter() {
                if !labels.insert(label.to_lowercase()) {
                    return whole(ids);
                }
                defs.push(&piece[def.span.clone()]);
            }
        }
        total += defs.iter().map(|d| d.len() + 2).sum::<usize>();
        if total > DEFINITIONS_MAX {
            return whole(ids);
        }
        found.push(defs);
    }
    Ok((pieces, found))
}

/// The events of piece `i` as they join the others': when the next piece goes on with
/// the table this one ends in (see [`pieces`]), the table's end is dropped here.
fn piece_events<'a>(
    i: usize,
    piece: Piece<'a>,
    joins_next: bool,
    defs: &[Vec<&str>],
) -> Box<dyn Iterator<Item = Event<'a>> + 'a> {
    let events = piece_events_alone(i, piece, defs);
    if !joins_next {
        return events;
    }
    // The table the next piece goes on with ends this piece: it is not ended here.
    let mut events = events.peekable();
    Box::new(std::iter::from_fn(move || {
        let e = events.next()?;
        let last = events.peek().is_none();
        (!(last && matches!(e, Event::End(TagEnd::Table)))).then_some(e)
    }))
}

/// The events of one piece as if it stood alone. The rest of a table cut in two is parsed
/// after the table's head, whose events are dropped, so its rows carry on the table the
/// piece before began. A piece that may refer to a definition elsewhere (it has a `[`) is
/// parsed from a copy followed by the other pieces' definitions, and the events of those
/// (what starts past the piece) are dropped. Events parsed from a copy are copied out of
/// it, which lives only as long as this piece is parsed.
fn piece_events_alone<'a>(
    i: usize,
    Piece { text: piece, head }: Piece<'a>,
    defs: &[Vec<&str>],
) -> Box<dyn Iterator<Item = Event<'a>> + 'a> {
    if let Some(head) = head {
        let text = format!("{head}{piece}");
        let events: Vec<Event<'a>> = Parser::new_ext(&text, options())
            .skip_while(|e| !matches!(e, Event::End(TagEnd::TableHead)))
            .skip(1)
            .map(Event::into_static)
            .collect();
        return Box::new(events.into_iter());
    }
    let others = defs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .flat_map(|(_, d)| d);
    if !piece.contains('[') || others.clone().next().is_none() {
        return Box::new(Parser::new_ext(piece, options()));
    }
    let mut text = String::with_capacity(piece.len() + 2 + DEFINITIONS_MAX);
    text.push_str(piece);
    for def in others {
        text.push_str("\n\n");
        text.push_str(def);
    }
    text.push('\n');
    let events: Vec<Event<'a>> = Parser::new_ext(&text, options())
        .into_offset_iter()
        // The definitions start two bytes past the piece; an event the parser makes up at
        // the piece's very end (the empty cell that fills a table's last row) is its own.
        .filter(|(_, range)| range.start <= piece.len())
        .map(|(e, _)| e.into_static())
        .collect();
    Box::new(events.into_iter())
}

/// Renders a post body: CommonMark plus tables, footnotes, strikethrough, task lists,
/// heading ids, math spans and smart punctuation. Raw HTML is the author's and is kept.
/// Shortcodes are expanded first (see `shortcodes`), with the site's templates.
///
/// One pass from the parser into one `String`: the summary and first paragraph are cut
/// from it, never rendered again, and no list of events is kept (but for the rest of a
/// table cut in two, see [`piece_events_alone`]). Rendering a 1.3 MB post through a list
/// of its events and three renders peaked at 48 times its size. Given a `spill`, a long
/// page leaves that `String` in parts as it is written (see [`Out`]).
///
/// A body that would take too much memory to parse is refused with a message saying why
/// (see [`parse_cost`]).
pub(crate) fn markdown_with(
    body: &str,
    templates: &Templates,
    spill: Option<Spill<'_>>,
) -> Result<Rendered, String> {
    // The bodies of paired shortcodes and figure captions, already expanded. Each is
    // measured before it is parsed; one too costly shows why in place of its content (the
    // post is not broken for it, and `nib check` does not list it).
    let md = |s: &str| match render_in_pieces(s, PIECE_LEN, None) {
        Ok(r) => r.html,
        Err(e) => format!("<p>{}</p>", escape(&e)),
    };
    // The expanded copy exists only when the body holds a `{{` or `{%`.
    let (body, _) = shortcodes::expand(body, templates, &md);
    render_in_pieces(&body, PIECE_LEN, spill)
}

/// [`markdown_with`] and no site templates, keeping the whole page.
#[cfg(test)]
pub(crate) fn markdown(body: &str) -> Rendered {
    markdown_with(body, &Templates::default(), None).expect("a body the tests render")
}

/// The shortcodes of a body that are shown as text, with their lines, for `nib check`.
pub(crate) fn shortcode_problems(body: &str, templates: &Templates) -> Vec<shortcodes::Found> {
    shortcodes::expand(body, templates, &|_| String::new()).1
}

fn render_in_pieces(
    body: &str,
    at_least: usize,
    spill: Option<Spill<'_>>,
) -> Result<Rendered, String> {
    let len = Cell::new(0);
    let (pieces, open_at_end) = pieces(body, at_least);
    for piece in &pieces {
        parse_within(piece.text, body.len())?;
    }
    // Prose grows by about a tenth as HTML: reserved once, the page is not copied as it
    // grows (and a page handed on is held only up to a part and the write that ends it).
    let mut reserve = body.len() + body.len() / 8;
    if spill.is_some() {
        reserve = reserve.min(HAND_ON_AT + KEPT);
    }
    let mut out = Out {
        html: String::with_capacity(reserve),
        kept: String::new(),
        handed: 0,
        hash: crate::hash::Fnv::new(),
        first_image: None,
        image_seen: false,
        spill,
        failed: None,
        len: &len,
    };
    // Before any parser that renders: each holds its tree, and one at a time is enough.
    let mut ids = HeadingIds::default();
    let (pieces, defs) = with_definitions(body, pieces, open_at_end, &mut ids)?;
    let joins: Vec<bool> = (0..pieces.len())
        .map(|i| pieces.get(i + 1).is_some_and(|p| p.head.is_some()))
        .collect();
    // One writer over every piece's events: its state (footnote numbers, the newline
    // before a block) runs on from piece to piece as through one document.
    let mut stream = Stream {
        events: pieces
            .into_iter()
            .enumerate()
            .flat_map(|(i, piece)| piece_events(i, piece, joins[i], &defs)),
        ahead: VecDeque::new(),
        table_wrapped: false,
        ids,
        len: &len,
        paragraph: None,
        paragraph_closing: false,
        html_block_at: None,
        more_at: None,
        footnotes: HashMap::new(),
        cited: HashSet::new(),
    };
    if html::write_html_fmt(&mut out, &mut stream).is_err() {
        // Only handing a part on can fail.
        return Err(out
            .failed
            .unwrap_or_else(|| "the page could not be written".into()));
    }
    let handed_on = out.handed > 0;
    if handed_on {
        out.hand_on(true)?;
    }
    let len = out.handed + out.html.len();
    let (html, first_image) = if handed_on {
        (out.kept, out.first_image)
    } else {
        let image = first_image(&out.html);
        (out.html, image)
    };
    // Standing first, the paragraph has no newline before it; in a page handed on, only
    // one within the part kept is known.
    let first_paragraph = match stream.paragraph {
        Some((start, end)) => match html.get(start..end.unwrap_or(len)) {
            Some(p) => p.strip_prefix('\n').unwrap_or(p).to_string(),
            None => String::new(),
        },
        None => String::new(),
    };
    Ok(Rendered {
        html,
        handed_on,
        len,
        hash: out.hash.finish(),
        more_at: stream.more_at,
        first_paragraph,
        first_image,
    })
}

/// Site-wide values every page shows.
pub(crate) struct Site<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub author: &'a str,
    /// Absolute, without a trailing slash.
    pub base: &'a str,
    pub nav: &'a [crate::config::NavLink],
    pub footer: &'a [crate::config::NavLink],
    /// The card image of pages that have none of their own (`image` in `nib.toml`).
    pub image: Option<&'a str>,
}

impl Site<'_> {
    /// The absolute URL of the site's default card image, when `nib.toml` names one.
    pub fn card_image(&self) -> Option<String> {
        self.image.map(|i| absolute_url(self.base, i))
    }
}

/// A post as templates see it.
pub(crate) struct PostView {
    pub slug: String,
    pub title: String,
    pub date_iso: String,
    pub date_human: String,
    pub date_rfc822: String,
    pub updated_iso: Option<String>,
    pub updated_human: Option<String>,
    /// (url slug, display name)
    pub tags: Vec<(String, String)>,
    pub summary: String,
    pub html: String,
    pub description: String,
    /// The card image: an absolute URL or a path on the site.
    pub image: Option<String>,
}

impl PostView {
    pub fn new(p: PostRow) -> PostView {
        let description = p
            .description
            .clone()
            .unwrap_or_else(|| plain_text(&p.summary, 200));
        PostView {
            // The day written, with the offset it was written in: the same instant as UTC,
            // on the day the author saw (`2013-09-06 22:02:41 -0400` is 6 September).
            date_iso: dates::rfc3339_at(p.date, p.offset),
            date_human: dates::human_at(p.date, p.offset),
            date_rfc822: dates::http(p.date),
            updated_iso: p.updated.map(|u| dates::rfc3339_at(u, p.offset)),
            updated_human: p
                .updated
                .filter(|u| dates::ymd_at(*u, p.offset) != dates::ymd_at(p.date, p.offset))
                .map(|u| dates::human_at(u, p.offset)),
            tags: p
                .tags
                .iter()
                .map(|t| (crate::routes::tag_key(t), t.clone()))
                .collect(),
            image: p.image.as_deref().and_then(|i| site_image(&p.slug, i)),
            slug: p.slug,
            title: p.title,
            summary: p.summary,
            html: p.html,
            description,
        }
    }

    /// The absolute URL of the post's card image (`og:image`), or the site's default.
    pub fn card_image(&self, site: &Site<'_>) -> Option<String> {
        self.image
            .as_deref()
            .or(site.image)
            .map(|i| absolute_url(site.base, i))
    }
}

/// A post's image as the site sees it: an absolute URL as it is, a path on the site as it
/// is, a path relative to the post resolved against the post's URL (a bundle's own
/// picture); `None` for what no link preview can fetch (`data:` URLs, nothing at all).
fn site_image(slug: &str, image: &str) -> Option<String> {
    let image = image.trim();
    if image.starts_with("https://") || image.starts_with("http://") || image.starts_with('/') {
        return Some(image.to_string());
    }
    if image.is_empty() || image.contains(':') {
        return None;
    }
    Some(format!(
        "/posts/{}/{}",
        crate::routes::encode_component(slug),
        image.trim_start_matches("./")
    ))
}

/// `url` made absolute against the site's base: a protocol-relative or site path gets the
/// base's scheme and host.
pub(crate) fn absolute_url(base: &str, url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        url.to_string()
    } else if let Some(rest) = url.strip_prefix("//") {
        format!("https://{rest}")
    } else {
        format!("{base}{url}")
    }
}

/// The `src` of the first `<img>` in rendered HTML, its entities decoded: a post's card
/// image when its front matter names none.
pub(crate) fn first_image(html: &str) -> Option<String> {
    let tag = &html[html.find("<img ")?..];
    let tag = &tag[..tag.find('>')?];
    let at = tag.find(" src=")? + 5;
    let value = &tag[at..];
    let src = match value.chars().next()? {
        q @ ('"' | '\'') => &value[1..][..value[1..].find(q)?],
        _ => value.split(' ').next()?,
    };
    let src = src
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    (!src.is_empty()).then_some(src)
}

/// Text content of an HTML fragment, cut at a word boundary, for meta descriptions.
///
/// One pass that stops as soon as the text is known to be cut: it runs on every view of a
/// post without a description, and reading a whole long post took 7% of the request.
pub(crate) fn plain_text(html: &str, max: usize) -> String {
    const ENTITIES: [(&str, char); 6] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&#x27;", '\''),
    ];
    let mut out = String::with_capacity(max + 8);
    let mut chars = 0;
    let mut in_tag = false;
    let mut rest = html;
    // Two characters past `max` settle it: the text is cut even if one is a trailing space.
    while chars <= max + 1 {
        let Some(c) = rest.chars().next() else { break };
        let mut step = c.len_utf8();
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                    chars += 1;
                }
            }
            // Decoded in the same pass, each entity once: `&amp;lt;` stays `&lt;`.
            '&' => {
                let (e, d) = ENTITIES
                    .into_iter()
                    .find(|(e, _)| rest.starts_with(e))
                    .unwrap_or(("&", '&'));
                out.push(d);
                step = e.len();
                chars += 1;
            }
            c => {
                out.push(c);
                chars += 1;
            }
        }
        rest = &rest[step..];
    }
    let out = out.trim_end();
    if out.chars().count() <= max {
        return out.to_string();
    }
    let cut: String = out.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map(|(a, _)| a).unwrap_or(&cut);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

/// Links between pages of a listing.
pub(crate) struct Pager {
    pub newer: Option<String>,
    pub older: Option<String>,
    pub page: u64,
    pub pages: u64,
}

impl Pager {
    /// `prefix` is the listing's first page (`/` or `/tags/rust/`); page N lives at
    /// `prefix + "page/N/"`.
    pub fn new(prefix: &str, page: u64, total: u64, per_page: u32) -> Pager {
        let pages = total.div_ceil(per_page as u64).max(1);
        let link = |n: u64| {
            if n == 1 {
                prefix.to_string()
            } else {
                format!("{prefix}page/{n}/")
            }
        };
        Pager {
            newer: (page > 1).then(|| link(page - 1)),
            older: (page < pages).then(|| link(page + 1)),
            page,
            pages,
        }
    }
}

#[derive(Template)]
#[template(path = "index.html")]
pub(crate) struct IndexPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub posts: Vec<PostView>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "post.html")]
pub(crate) struct PostPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub post: PostView,
    /// (slug, title)
    pub older: Option<(String, String)>,
    pub newer: Option<(String, String)>,
}

/// A standalone page of `pages/` (see `pages`).
#[derive(Template)]
#[template(path = "page.html")]
pub(crate) struct StandalonePage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    pub page: PostView,
}

#[derive(Template)]
#[template(path = "tags.html")]
pub(crate) struct TagsPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    /// (slug, name, count)
    pub tags: Vec<(String, String, i64)>,
}

#[derive(Template)]
#[template(path = "tag.html")]
pub(crate) struct TagPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
    /// The tag's URL segment (`/tags/TAG/`).
    pub tag: &'a str,
    pub name: String,
    pub count: i64,
    pub posts: Vec<PostView>,
    pub pager: Pager,
}

#[derive(Template)]
#[template(path = "404.html")]
pub(crate) struct NotFoundPage<'a> {
    pub site: &'a Site<'a>,
    pub path: &'a str,
}

/// The Atom feed up to its first entry; the entries follow one at a time.
#[derive(Template)]
#[template(path = "atom_head.xml")]
pub(crate) struct AtomHead<'a> {
    pub site: &'a Site<'a>,
    /// The feed's title: the site's, or the site's and the tag's for a tag feed.
    pub title: &'a str,
    /// Where the feed is (`/feed.xml`) and the page it follows (`/`), site-relative.
    pub feed_path: &'a str,
    pub page_path: &'a str,
    pub updated: String,
    pub author: &'a str,
}

#[derive(Template)]
#[template(path = "atom_entry.xml")]
pub(crate) struct AtomEntry<'a> {
    pub site: &'a Site<'a>,
    pub post: PostView,
}

pub(crate) const ATOM_TAIL: &str = "</feed>\n";

/// The RSS feed up to its first item; the items follow one at a time.
#[derive(Template)]
#[template(path = "rss_head.xml")]
pub(crate) struct RssHead<'a> {
    pub site: &'a Site<'a>,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "rss_entry.xml")]
pub(crate) struct RssEntry<'a> {
    pub site: &'a Site<'a>,
    pub author: &'a str,
    pub post: PostView,
}

pub(crate) const RSS_TAIL: &str = "</channel>\n</rss>\n";

/// How many entries the feeds carry.
pub(crate) const FEED_ENTRIES: u32 = 20;

/// The JSON Feed (version 1.1) up to its first item, written as one object left open:
/// `{"version":…,"items":[`. The items follow one at a time, then [`JSON_FEED_TAIL`].
pub(crate) fn json_feed_head(buf: &mut Vec<u8>, site: &Site<'_>, author: &str) {
    let head = serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": site.title,
        "home_page_url": format!("{}/", site.base),
        "feed_url": format!("{}/feed.json", site.base),
        "description": site.description,
        "language": "en",
        "authors": [{ "name": author }],
    });
    let text = head.to_string();
    // The object is complete; reopen it to add the items.
    buf.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
    buf.extend_from_slice(b",\"items\":[");
}

/// One JSON Feed item: the whole post as HTML, with its dates and tags. `first` leaves
/// out the comma that separates items.
pub(crate) fn json_feed_item(buf: &mut Vec<u8>, site: &Site<'_>, post: &PostView, first: bool) {
    let url = format!("{}/posts/{}/", site.base, post.slug);
    let item = serde_json::json!({
        "id": url,
        "url": url,
        "title": post.title,
        "content_html": post.html,
        "summary": post.description,
        "date_published": post.date_iso,
        "date_modified": post.updated_iso.as_deref().unwrap_or(&post.date_iso),
        "tags": post.tags.iter().map(|(_, name)| name).collect::<Vec<_>>(),
    });
    if !first {
        buf.push(b',');
    }
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &item);
}

pub(crate) const JSON_FEED_TAIL: &str = "]}\n";

/// The feed's own `updated`: the newest entry's date, so it moves only with content.
/// `entries` are (date, updated) pairs.
pub(crate) fn feed_updated(entries: impl Iterator<Item = (i64, Option<i64>)>) -> i64 {
    entries
        .map(|(date, updated)| updated.unwrap_or(date).max(date))
        .max()
        .unwrap_or(0)
}

pub(crate) const SITEMAP_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n";
pub(crate) const SITEMAP_TAIL: &str = "</urlset>\n";

/// One `<url>` entry of the sitemap.
pub(crate) fn sitemap_url(out: &mut Vec<u8>, base: &str, path: &str, lastmod: Option<i64>) {
    out.extend_from_slice(b"  <url><loc>");
    // The sitemap protocol wants URLs escaped: slugs may hold letters like `é`.
    let path: Vec<String> = path
        .split('/')
        .map(crate::links::encode_component)
        .collect();
    out.extend_from_slice(escape(&format!("{base}{}", path.join("/"))).as_bytes());
    out.extend_from_slice(b"</loc>");
    if let Some(t) = lastmod {
        out.extend_from_slice(format!("<lastmod>{}</lastmod>", dates::ymd(t)).as_bytes());
    }
    out.extend_from_slice(b"</url>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_extensions() {
        let cases = [
            ("| a | b |\n|---|---|\n| 1 | 2 |", "<table>"),
            (
                "| a | b |\n|---|---|\n| 1 | 2 |",
                "<div class=\"table-scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Table\">\n<table>",
            ),
            (
                "| a |\n|--:|\n| 1 |",
                "<td style=\"text-align: right\">1</td></tr>\n</tbody></table>\n</div>\n",
            ),
            (
                "    indented",
                "<pre tabindex=\"0\"><code>indented</code></pre>",
            ),
            (
                "```\nplain\n```",
                "<pre tabindex=\"0\"><code>plain\n</code></pre>",
            ),
            (
                "- [ ] todo",
                "<input disabled=\"\" type=\"checkbox\" aria-label=\"Not done\">",
            ),
            ("x[^1]\n\n[^1]: note", "footnote-definition"),
            ("~~gone~~", "<del>gone</del>"),
            ("- [x] done", "type=\"checkbox\""),
            ("## Why SQLite?", "<h2 id=\"why-sqlite\">"),
            ("## Custom {#mine}", "<h2 id=\"mine\">"),
            ("\"quoted\" -- dash...", "“quoted” – dash…"),
            (
                "<div class=\"raw\">kept</div>",
                "<div class=\"raw\">kept</div>",
            ),
        ];
        for (md, want) in cases {
            let html = markdown(md).html;
            assert!(html.contains(want), "{md:?} → {html}");
        }
    }

    #[test]
    fn math_spans_keep_their_text() {
        let cases = [
            (
                "Inline $\\alpha_1 + \\frac{a}{b}$ here.",
                "<span class=\"math math-inline\">\\alpha_1 + \\frac{a}{b}</span>",
            ),
            (
                "$$\n\\sum_{i=1}^{n} \"i\" -- x\n$$",
                "<span class=\"math math-display\">\n\\sum_{i=1}^{n} &quot;i&quot; -- x\n</span>",
            ),
            // Money is not math: the text stays as written.
            (
                "It costs $5 and $10 today.",
                "<p>It costs $5 and $10 today.</p>",
            ),
            ("Between $5 and $10.", "<p>Between $5 and $10.</p>"),
            ("From $5-$10 a month", "<p>From $5-$10 a month</p>"),
            (
                "$5/$10 or $x$",
                "<p>$5/$10 or <span class=\"math math-inline\">x</span></p>",
            ),
            ("Cost ($5) vs ($10)", "<p>Cost ($5) vs ($10)</p>"),
            ("US$5 or $20,000", "<p>US$5 or $20,000</p>"),
            (
                "$2x + 1$ is odd",
                "<span class=\"math math-inline\">2x + 1</span> is odd",
            ),
            // TeX's double braces are no shortcode.
            (
                "$x^{{2}}$",
                "<span class=\"math math-inline\">x^{{2}}</span>",
            ),
        ];
        for (md, want) in cases {
            let html = markdown(md).html;
            assert!(html.contains(want), "{md:?} → {html}");
        }
    }

    #[test]
    fn shortcodes_render_as_html() {
        let cases = [
            (
                "{{< figure src=\"a.png\" caption=\"A *cat*\" >}}\nAfter.",
                "<figure><img src=\"a.png\" alt=\"A *cat*\" loading=\"lazy\"><figcaption><p>A <em>cat</em></p></figcaption></figure>\n<p>After.</p>",
            ),
            (
                "{{< highlight go >}}\nfmt.Println(\"hi\")\n{{< /highlight >}}",
                "<pre tabindex=\"0\"><code class=\"language-go\">fmt.<span class=\"hl-f\">Println</span>(<span class=\"hl-s\">&quot;hi&quot;</span>)\n</code></pre>",
            ),
            (
                "{% highlight ruby linenos %}\nputs 'x'\n{% endhighlight %}",
                "<pre tabindex=\"0\"><code class=\"language-ruby\"><span class=\"hl-b\">puts</span> <span class=\"hl-s\">'x'</span>\n</code></pre>",
            ),
            (
                "{{< youtube abc >}}",
                "<p class=\"embed\"><a href=\"https://www.youtube.com/watch?v=abc\">",
            ),
            (
                "{% raw %}\n{{ \"a\" }} -- {% x %}\n{% endraw %}",
                "<p class=\"shortcode\">{{ &quot;a&quot; }}</p>",
            ),
            // Unknown ones are the text they were, and no quote or dash is curled.
            (
                "a {{< gallery \"x\" -- y >}} b",
                "<p>a {{&lt; gallery \"x\" -- y &gt;}} b</p>",
            ),
            (
                "{{ figure(src=\"a.svg\", caption=\"It's\") }}",
                "<p class=\"shortcode\">{{ figure(src=&quot;a.svg&quot;, caption=&quot;It&#39;s&quot;) }}</p>",
            ),
            (
                "[Other]({{< ref \"other-post.md\" >}})",
                "<a href=\"/posts/other-post/\">Other</a>",
            ),
        ];
        for (md, want) in cases {
            let html = markdown(md).html;
            assert!(html.contains(want), "{md:?} → {html}");
            assert!(
                !html.contains('“') && !html.contains('’'),
                "{md:?} → {html}"
            );
        }
    }

    /// Shortcodes of every kind among the blocks of the differential test: the expanded
    /// body renders, in pieces as whole, without a panic, and nothing is lost.
    #[test]
    fn shortcodes_among_any_blocks_render() {
        const SHORTCODES: &[&str] = &[
            "{{< figure src=\"a.png\" caption=\"A [link](/x)\" >}}\n",
            "{{< highlight go >}}\nfunc() {}\n\n# not a heading\n{{< /highlight >}}\n",
            "{% highlight ruby %}\nx\n",
            "{% endhighlight %}\n",
            "{% raw %}\n",
            "{% endraw %}\n",
            "{{< youtube x >}} inline\n",
            "{{< unknown \"q\" >}}\n",
            "- {{< x id=\"1\" >}}\n",
            "> {{< gist a b >}}\n",
            "$a$ and $$b$$\n",
        ];
        let mut next = crate::test_rng(0x1234_5678_9abc_def1);
        for _ in 0..500 {
            let mut body = String::new();
            for _ in 0..(2 + next(10)) {
                if next(2) == 0 {
                    body.push_str(SHORTCODES[next(SHORTCODES.len())]);
                } else {
                    body.push_str(BLOCKS[next(BLOCKS.len())]);
                }
                if next(3) > 0 {
                    body.push('\n');
                }
            }
            let (expanded, _) =
                shortcodes::expand(&body, &Templates::default(), &|s| markdown(s).html);
            let (whole, parts) = (
                render_in_pieces(&expanded, usize::MAX, None).unwrap(),
                render_in_pieces(&expanded, 1, None).unwrap(),
            );
            assert_eq!(whole.html, parts.html, "{body:?}");
        }
    }

    /// Regression: 11 front-page summaries started with a shortcode shown raw.
    #[test]
    fn summaries_never_start_with_a_shortcode() {
        let r = markdown("{{< gallery >}}\n\nFirst words.\n\nMore.");
        assert_eq!(r.first_paragraph, "<p>First words.</p>\n");
        let r = markdown("{{< gallery >}} First words.\n\nMore.");
        assert_eq!(r.first_paragraph, "<p>First words.</p>\n");
        let r = markdown("{{< gallery >}}\n{% include x %}\n\nIntro.\n\n<!-- more -->\n\nRest.");
        assert_eq!(r.summary(), Some("<p>Intro.</p>\n"));
    }

    #[test]
    fn bodies_too_costly_to_parse_are_refused_before_parsing() {
        let fence = |lines: usize| format!("```\n{}```\n", "a\n".repeat(lines));
        // (body, refused): one block of one-letter lines costs 128 bytes a line, fenced
        // code an eighth of that; blocks end at a heading, so each piece is measured
        // alone. The limit is 4 MB or three times the body.
        let cases: Vec<(String, bool)> = vec![
            ("a\n".repeat(30_000), false),
            ("a\n".repeat(40_000), true),
            ("*a* ".repeat(20_000), true),
            ("|a|b|\n".repeat(10_000), true),
            // Nested list items on one line: a list and an item each (36 MB for 563 KB).
            ("- - - - - - - - a\n".repeat(4_000), true),
            ("- a\n".repeat(4_000), false),
            (fence(200_000), false),
            (fence(400_000), true),
            (
                "a\n".repeat(30_000) + "\n# Next\n\n" + &"a\n".repeat(30_000),
                false,
            ),
            // Prose: few marks a line.
            (
                "Words and words, with one `code` span and a [link](/x).\n\n".repeat(18_000),
                false,
            ),
        ];
        for (body, refused) in &cases {
            let r = markdown_with(body, &Templates::default(), None);
            assert_eq!(r.is_err(), *refused, "{} bytes: {:?}", body.len(), r.err());
            if let Err(e) = r {
                assert!(e.contains("parse as one piece"), "{e}");
            }
        }
    }

    #[test]
    fn a_code_block_too_long_to_highlight_is_shown_whole_and_escaped() {
        let line = "let s = \"<b>\" & x; // a line of Rust\n";
        let n = HIGHLIGHT_MOST / line.len() + 100;
        let html = markdown(&format!("```rust\n{}```\n\nAfter.\n", line.repeat(n))).html;
        assert!(!html.contains("hl-"), "not highlighted");
        // Escaped by the writer, which leaves quotes as they are in element text.
        assert_eq!(html.matches("let s = \"&lt;b&gt;\" &amp; x;").count(), n);
        assert!(
            html.contains("</code></pre>\n<p>After.</p>"),
            "{}",
            &html[html.len() - 200..]
        );
        let short = markdown(&format!("```rust\n{line}```\n")).html;
        assert!(short.contains("hl-"), "{short}");
    }

    /// Regression: a post's page was held whole while it was rendered, beside the post's
    /// text, and a post of highlighted code has a page of three to four times its size:
    /// 800 KB of such a post took 3.6 MB to index. A long page is now handed on in parts
    /// as it is written; the parts must join into the very page kept whole, and what is
    /// cut from a page (summary, first paragraph, first image, hash) must not change.
    #[test]
    fn a_long_page_handed_on_in_parts_is_the_page_kept_whole() {
        let code = "```rust\n".to_string()
            + &"let s = \"<b>\" & x; // a line of Rust\n".repeat(80)
            + "```\n\n";
        let step = |i: usize| format!("Step {i}, with *words* and a [link](/x).\n\n{code}");
        let many = |n: usize| (0..n).map(step).collect::<String>();
        let late_image = format!("{}![late](/late.png)\n\n{}", many(60), many(5));
        let late_more = format!("{}<!-- more -->\n\n{}", many(60), many(5));
        let cases: &[(&str, String, bool)] = &[
            (
                "short: kept whole",
                format!("First.\n\n<!-- more -->\n\n{}", many(2)),
                false,
            ),
            (
                "summary, image and paragraph early",
                format!("Intro ![a](/a.png).\n\n<!-- more -->\n\n{}", many(80)),
                true,
            ),
            ("first image far down", late_image, true),
            ("the marker far down", late_more, true),
            (
                "one huge code block",
                format!("Intro.\n\n```\n{}```\n", "x < y & z\n".repeat(30_000)),
                true,
            ),
            (
                "text with no tag for long",
                format!("{}\n", "word ".repeat(40_000)),
                true,
            ),
        ];
        for (name, body, handed) in cases {
            let whole = markdown(body);
            let mut parts = Vec::new();
            let mut spill = |p: &str| {
                assert!(!p.is_empty(), "{name}: an empty part");
                parts.push(p.to_string());
                Ok(())
            };
            let r = markdown_with(body, &Templates::default(), Some(&mut spill)).unwrap();
            assert_eq!(r.handed_on, *handed, "{name}");
            assert_eq!(r.len, whole.html.len(), "{name}");
            assert_eq!(r.hash, crate::hash::Fnv::hash_str(&whole.html), "{name}");
            assert_eq!(r.first_image, whole.first_image, "{name}");
            // The pages are long: compared, never printed.
            if *handed {
                assert!(parts.concat() == whole.html, "{name}: the parts differ");
                assert!(
                    whole.html.starts_with(&r.html) && r.html.len() <= KEPT,
                    "{name}"
                );
                // A summary or first paragraph is kept when it ends within what was kept;
                // past that, there is none.
                let kept = whole.summary().filter(|s| s.len() <= KEPT);
                assert!(r.summary() == kept, "{name}: the summary differs");
                let first = &whole.first_paragraph;
                let ends = whole.html.find(first.as_str()).map(|at| at + first.len());
                let first = if ends.is_some_and(|e| e <= KEPT) {
                    first.as_str()
                } else {
                    ""
                };
                assert!(
                    r.first_paragraph == first,
                    "{name}: the first paragraph differs"
                );
            } else {
                assert!(parts.is_empty(), "{name}");
                assert!(r.html == whole.html, "{name}: the pages differ");
                assert!(
                    r.summary() == whole.summary(),
                    "{name}: the summary differs"
                );
                assert!(r.first_paragraph == whole.first_paragraph, "{name}");
            }
        }
        // The store failing ends the rendering with its message.
        let mut failing = |_: &str| Err("disk full".to_string());
        let body = many(80);
        let failed = markdown_with(&body, &Templates::default(), Some(&mut failing));
        assert_eq!(failed.err().as_deref(), Some("disk full"));
    }

    /// Regression: a table is one block, which the parser takes whole: a post holding a
    /// table of 30,000 rows (480 KB) would have taken 11 MB to parse, and was refused. A
    /// long table is cut between rows; the page must be the one the whole table makes.
    #[test]
    fn a_long_table_is_cut_between_rows_and_renders_as_one() {
        let rows = |n: usize| {
            (0..n)
                .map(|i| format!("| {i} | *x* | y |\n"))
                .collect::<String>()
        };
        let table = format!("| a | b | c |\n|:--|:-:|--:|\n{}", rows(30_000));
        let cases = [
            (format!("Intro.\n\n{table}\nAfter.\n"), true),
            (format!("{table}\n## Next {{#next}}\n\n{table}"), true),
            // Not cut: after a paragraph line, inside a list, with definitions about.
            (format!("Intro.\n{table}"), false),
            (
                format!("- item\n\n  {}", table.replace('\n', "\n  ")),
                false,
            ),
            (format!("[r]: /x\n\n{table}"), false),
        ];
        for (body, cut) in &cases {
            let (pieces, _) = pieces(body, PIECE_LEN);
            let heads = pieces.iter().filter(|p| p.head.is_some()).count();
            assert_eq!(heads > 0, *cut, "{}", &body[..40]);
            if *cut {
                let html = render_in_pieces(body, PIECE_LEN, None).unwrap().html;
                let tables = body.matches("|:--|").count();
                assert_eq!(html.matches("<table>").count(), tables);
                assert_eq!(html.matches("<tr>").count(), tables * 30_001);
                assert_eq!(html.matches("<em>x</em>").count(), tables * 30_000);
            }
        }
        // Cut after every row, a shorter table (whose whole the parse check lets through)
        // makes the very page the whole table makes.
        let table = format!("| a | b | c |\n|:--|:-:|--:|\n{}", rows(2_000));
        let bare: String = (0..2_000).map(|i| format!("{i} | x\n")).collect();
        let bodies = [
            format!("Intro.\n\n{table}\nAfter.\n"),
            format!("{table}\n\n{table}"),
            format!("n | x\n--|--\n{bare}"),
            // A row of no cells ends a table; a header in an HTML block heads none.
            format!("| a | b |\n|---|---|\n| 1 | 2 |\n|\n{}", rows(2_000)),
            format!("<!--\n\nName | Value -->\n|---|---|\n{}", rows(2_000)),
            format!("| a |\n|---|\n{}- 1 | item\n{}", rows(100), rows(100)),
        ];
        for body in bodies {
            let parts = render_in_pieces(&body, 1, None).unwrap();
            let whole = render_in_pieces(&body, usize::MAX, None).unwrap();
            assert!(
                parts.html == whole.html,
                "{}: the pages differ",
                &body[..40]
            );
        }
    }

    #[test]
    fn heading_ids_are_unique() {
        let html = markdown("## Notes\n\n## Notes\n\n## Notes").html;
        for id in ["notes", "notes-1", "notes-2"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{html}");
        }
    }

    /// Regression: heading ids were found by trying `base`, `base-1`, ... from the start
    /// for every heading, so 20,000 empty `#` lines blocked serving for 32 s and 30,000
    /// `## a` lines for 69 s.
    #[test]
    fn twenty_thousand_like_headings_render_in_linear_time() {
        // A release build takes a few tens of milliseconds, an unoptimised one half a
        // second; the limits leave room for a busy machine, and the quadratic version took
        // 32 s and 69 s in a release build.
        let limit =
            std::time::Duration::from_millis(if cfg!(debug_assertions) { 10_000 } else { 1000 });
        for (md, last) in [
            (format!("# t\n{}", "#\n".repeat(20_000)), "section-19999"),
            ("## a\n".repeat(30_000), "a-29999"),
        ] {
            let started = std::time::Instant::now();
            let html = markdown(&md).html;
            assert!(started.elapsed() < limit, "{:?}", started.elapsed());
            assert!(html.contains(&format!("id=\"{last}\"")), "{last}");
        }
        // Explicit ids are kept clear of, wherever they stand.
        let html = markdown("## a\n\n## a\n\n## b {#a-1}\n\n## a\n\n## c {.x #a-3}").html;
        for id in ["\"a\"", "\"a-2\"", "\"a-1\"", "\"a-4\"", "\"a-3\""] {
            assert!(html.contains(&format!("id={id}")), "{id}: {html}");
        }
    }

    /// Blocks of markdown the differential test strings together at random.
    const BLOCKS: &[&str] = &[
        "Para *one* with \"quotes\" -- and `code`.\n",
        "Lazy\ncontinued line\n",
        "# Heading\n",
        "## Heading {#fixed}\n",
        "## Heading\n",
        "#hashtag line\n",
        "Setext\n===\n",
        "- item\n- item two\n",
        "- loose\n\n- list\n",
        "1. one\n2. two\n",
        "- item\n\n  para in item\n",
        "- item\n  ```\n  fenced in item\n\nText after\n  ```\n",
        "> quote\nlazy\n",
        "> ```\n> fenced in quote\n",
        "```\ncode\n\nText in code\n# not a heading\n```\n",
        "```rust\nfn main() {}\n```\n",
        "~~~~\nTilde code\n\nText\n~~~\nstill code\n~~~~\n",
        "``` not `a` fence\n",
        "  ```\nindented fence\n\nText\n  ```\n",
        "    indented code\n\n    more code\n",
        "<div>\nhtml\n```\n</div>\n",
        "<!--\ncomment\n\nText in comment\n-->\n",
        "<!-- more -->\n",
        "<pre>\npre\n\nText in pre\n</pre>\n",
        "<span>inline</span> start\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "a | b\n--|--\n1 | 2\n",
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n| 3 | *4* |\n| 5 |\n| 6 | 7 | 8 |\n| `a|b` | \\| |\n",
        "x | y\n- | -\n1 | 2\n# heading in a table\n3 | 4\n- a list?\n5 | 6\n",
        "| t |\n|---|\n| r |\n> a quote?\n| r2 |\n    indented\n| r3 |\n",
        "| t | u |\n| --- | --- |\n| r | &amp; <b>x</b> |\n| [l](/x) | ~~s~~ |\n\n",
        "- | -\n--|--\n",
        "text[^n] with a note\n",
        "[^n]: the note\n",
        "[ref]: https://example.org\n",
        "A [ref] link and [REF][] and [text][ref]\n",
        "> [q]: /quoted 'Q'\n",
        "[m]:\n  /multi\n  'title'\n",
        "- [l]: /in-list\n",
        "Refs [q], [m], [l] and notes[^long][^x]\n",
        "[^long]: first\n\n    second para\n",
        "[^x]: note x with [ref]\n",
        "[ref]: /duplicate\n",
        "![img][ref] and [^missing]\n",
        "---\n",
        "***\n",
        "- [x] task\n",
        "\t```\ntab-indented\n",
        " \t~~~\nspace and tab\n",
        "<PRE>\nupper\n\nText\n</pre>\n",
        "<?php\n\nText ?>\n",
        "<!DOCTYPE html>\n",
        "",
    ];

    /// Rendering a body in pieces gives the bytes rendering it whole gives: checked on
    /// the example posts and on bodies made of every kind of block that could run on
    /// across a cut, each cut wherever [`pieces`] allows.
    #[test]
    fn pieces_render_as_the_whole_body_does() {
        let mut bodies: Vec<String> = std::fs::read_dir("posts")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            })
            .into_iter()
            .flatten()
            .collect();
        // A small deterministic generator, so a failure is the same on every run.
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            let mut body = String::new();
            for _ in 0..(2 + next(8)) {
                body.push_str(BLOCKS[next(BLOCKS.len())]);
                if next(3) > 0 {
                    body.push('\n');
                }
            }
            if next(5) == 0 {
                body = body.replace('\n', "\r\n");
            }
            bodies.push(body);
        }
        let (mut cut, mut table_cuts) = (0, 0);
        for body in &bodies {
            let (p, _) = pieces(body, 1);
            cut += p.len() - 1;
            table_cuts += p.iter().filter(|p| p.head.is_some()).count();
            let (whole, parts) = (
                render_in_pieces(body, usize::MAX, None).unwrap(),
                render_in_pieces(body, 1, None).unwrap(),
            );
            assert_eq!(whole.html, parts.html, "{body:?}");
            assert_eq!(whole.summary(), parts.summary(), "{body:?}");
            assert_eq!(whole.first_paragraph, parts.first_paragraph, "{body:?}");
        }
        assert!(cut > 1000, "only {cut} cuts were tried");
        assert!(
            table_cuts > 100,
            "only {table_cuts} cuts in tables were tried"
        );
        // And the copies of definitions were made and used, not only given up on.
        let copied = bodies
            .iter()
            .filter(|b| {
                let (pieces, open) = pieces(b, 1);
                let (pieces, defs) =
                    with_definitions(b, pieces, open, &mut HeadingIds::default()).unwrap();
                pieces.len() > 1 && defs.iter().any(|d| !d.is_empty())
            })
            .count();
        assert!(
            copied > 300,
            "definitions were copied for only {copied} bodies"
        );
    }

    /// A heading waits in a buffer until its id is known; a setext heading of 5,000 lines
    /// would hold them all. The id comes from what the look-ahead saw, and every line is
    /// still shown.
    #[test]
    fn a_huge_heading_is_named_from_its_start() {
        let md = format!("{}===\n", "word\n".repeat(5000));
        let html = markdown(&md).html;
        assert!(html.starts_with("<h1 id=\"wordwordword"), "{}", &html[..60]);
        assert_eq!(html.matches("word").count(), 5000 + HEADING_LOOKAHEAD / 2);
        let md = format!("# {}\n", "x".repeat(100_000));
        let html = markdown(&md).html;
        assert!(html.contains(&format!("id=\"{}\"", "x".repeat(HEADING_TEXT_MAX))));
    }

    #[test]
    fn more_marker_only_on_its_own_line() {
        assert_eq!(
            markdown("a\n\n<!-- more -->\n\nb").summary(),
            Some("<p>a</p>\n")
        );
        assert!(markdown("a <!-- more --> b").summary().is_none());
        // Regression: a marker shown inside a code block cut the summary mid-`<pre>`.
        assert!(
            markdown("a\n\n```\n<!-- more -->\n```\n\nb")
                .summary()
                .is_none()
        );
    }

    #[test]
    fn code_in_a_known_language_is_highlighted_once_at_render_time() {
        let r = markdown("```rust\nfn main() { let x = \"<\"; }\n```\n\n```brainfuck\n<+>\n```\n");
        assert!(
            r.html.starts_with(
                "<pre tabindex=\"0\"><code class=\"language-rust\"><span class=\"hl-k\">fn</span> <span class=\"hl-f\">main</span>()"
            ),
            "{}",
            r.html
        );
        assert!(
            r.html
                .contains("<span class=\"hl-s\">&quot;&lt;&quot;</span>")
        );
        // An unknown language is left as the parser writes it: escaped, unmarked.
        assert!(
            r.html.contains(
                "<pre tabindex=\"0\"><code class=\"language-brainfuck\">&lt;+&gt;\n</code></pre>"
            ),
            "{}",
            r.html
        );
    }

    #[test]
    fn footnotes_link_to_their_note_and_back_to_the_first_citation() {
        let r = markdown(
            "A[^x] b[^x] c[^y].\n\n[^x]: Note x.\n\n[^y]: Note y.\n\n[^z]: Never cited.\n",
        );
        let h = &r.html;
        assert!(h.contains(r##"<a id="fnref-x" href="#fn-x">1</a>"##), "{h}");
        assert!(
            h.contains(r##"b<sup class="footnote-reference"><a href="#fn-x">1</a>"##),
            "{h}"
        );
        assert!(h.contains(r##"<a id="fnref-y" href="#fn-y">2</a>"##), "{h}");
        assert!(
            h.contains(r##"<div class="footnote-definition" id="fn-x"><sup class="footnote-definition-label"><a href="#fnref-x" title="Back to the text">1</a></sup>"##),
            "{h}"
        );
        // A note nobody cites has its number, and nothing to go back to.
        assert!(
            h.contains(r#"id="fn-z"><sup class="footnote-definition-label">3</sup>"#),
            "{h}"
        );
        assert_eq!(h.matches(r#"id="fnref-x""#).count(), 1, "ids stay unique");
    }

    #[test]
    fn card_images_resolve_against_the_post_and_the_site() {
        // (image as written, what the page's og:image says for post `my-post`)
        let cases = [
            (
                "https://cdn.example/a.png",
                Some("https://cdn.example/a.png"),
            ),
            ("/img/a.png", Some("https://blog.example/img/a.png")),
            (
                "cover.png",
                Some("https://blog.example/posts/my-post/cover.png"),
            ),
            (
                "./cover.png",
                Some("https://blog.example/posts/my-post/cover.png"),
            ),
            ("//cdn.example/b.png", Some("https://cdn.example/b.png")),
            ("data:image/png;base64,AAAA", None),
            ("  ", None),
        ];
        for (written, want) in cases {
            let got =
                site_image("my-post", written).map(|i| absolute_url("https://blog.example", &i));
            assert_eq!(got.as_deref(), want, "{written}");
        }
        // The first image of a page, its entities decoded.
        let cases = [
            (
                "<p><img src=\"a.png\" alt=\"x\"></p><img src=\"b.png\">",
                Some("a.png"),
            ),
            ("<img alt='x' src='/q?a=1&amp;b=2'>", Some("/q?a=1&b=2")),
            ("<p>no picture</p>", None),
            ("<img alt=\"broken\"", None),
        ];
        for (html, want) in cases {
            assert_eq!(first_image(html).as_deref(), want, "{html}");
        }
    }

    #[test]
    fn footnote_ids_do_not_clash_with_headings() {
        let html = markdown("# Intro\n\ntext[^intro]\n\n[^intro]: note").html;
        assert!(
            html.contains("id=\"intro\"") && html.contains("id=\"fn-intro\""),
            "{html}"
        );
        assert!(html.contains("href=\"#fn-intro\""), "{html}");
    }

    #[test]
    fn pager_links() {
        let p = Pager::new("/", 1, 25, 10);
        assert_eq!(
            (p.newer, p.older.as_deref(), p.pages),
            (None, Some("/page/2/"), 3)
        );
        let p = Pager::new("/tags/x/", 2, 25, 10);
        assert_eq!(
            (p.newer.as_deref(), p.older.as_deref()),
            (Some("/tags/x/"), Some("/tags/x/page/3/"))
        );
        let p = Pager::new("/", 1, 0, 10);
        assert_eq!((p.newer, p.older, p.pages), (None, None, 1));
    }

    #[test]
    fn plain_text_cuts_at_words() {
        assert_eq!(
            plain_text("<p>Hello <b>big</b> world &amp; more</p>", 100),
            "Hello big world & more"
        );
        assert_eq!(plain_text("<p>one two three four</p>", 9), "one two…");
        // A long text is cut the same whether or not it was read to the end.
        let long = format!("<p>{}</p>", "word &amp; ".repeat(2000));
        assert_eq!(plain_text(&long, 20), "word & word & word…");
        let entities = format!("<p>{}</p>", "&quot;".repeat(500));
        assert_eq!(plain_text(&entities, 10), format!("{}…", "\"".repeat(10)));
        assert_eq!(
            plain_text("<p>&amp;lt;tag&amp;gt; &amp; &quot;q&quot;</p>", 100),
            "&lt;tag&gt; & \"q\""
        );
    }
}
