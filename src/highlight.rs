//! Syntax highlighting of code blocks, done once when a post is rendered (never per
//! request). Each language is a row of [`LANGS`]: its comment and string delimiters and its
//! keywords; one linear scanner turns code into HTML with `<span class="hl-…">` around
//! keywords, strings, comments, numbers, literals and called functions, and the palette
//! lives in `style.css` (light and dark). Markup (HTML, XML) and diffs have scanners of
//! their own. A language not in the table is left plain.
//!
//! Why not a grammar-based highlighter: measured on this machine, syntect with its default
//! syntaxes added 2.2 MB to the binary, and highlighting 1,200 lines in six languages took
//! 1.2 s and 42 MB of RSS (its regexes compile lazily): the whole budget of nib many times
//! over. Keyword scanning gets the look readers expect (comments, strings, keywords set
//! apart) at the cost of a few static tables and no allocation beyond the output.

use std::fmt::Write;

/// How one language's source is cut into tokens.
struct Lang {
    /// The names a fence may give it (`rust`, `rs`), lowercase.
    names: &'static [&'static str],
    /// Line comment openers.
    line: &'static [&'static str],
    /// Block comments and multi-line strings, as (open, close, class).
    blocks: &'static [(&'static str, &'static str, &'static str)],
    /// Characters that open a string closed by the same character on the same line
    /// (backslash escapes the next character).
    quotes: &'static str,
    /// Keywords, separated by spaces.
    keywords: &'static str,
    /// Literals and built-in names (`true`, `None`, `self`, `String`), separated by spaces.
    builtins: &'static str,
    /// Keywords compared without case (SQL).
    any_case: bool,
    /// `'` opens a string only when it closes right after one character or an escape, so
    /// Rust's lifetimes (`'a`) stay plain.
    tick_is_lifetime: bool,
    /// A `$NAME` or `${…}` is a variable (shells, PHP, Perl).
    dollar_vars: bool,
    scan: Scan,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    Code,
    Markup,
    Diff,
}

const C_KEYWORDS: &str = "\
    auto break case const continue default do else enum extern for goto if inline \
    register restrict return sizeof static struct switch typedef union volatile \
    while #include #define #ifdef #ifndef #endif #if #else #pragma";
const C_TYPES: &str = "\
    char double float int long short signed unsigned void bool size_t NULL true \
    false uint8_t uint32_t uint64_t int32_t int64_t";
const CPP_KEYWORDS: &str = "\
    break case catch class const constexpr continue default delete do else enum \
    explicit export extern for friend goto if inline mutable namespace new noexcept \
    operator private protected public return sizeof static static_cast struct switch \
    template this throw try typedef typename union using virtual volatile while \
    co_await co_return #include #define #ifdef #ifndef #endif #if #else #pragma";
const CPP_TYPES: &str = "\
    auto bool char double float int long short signed unsigned void size_t nullptr \
    true false std string vector NULL";
const JS_KEYWORDS: &str = "\
    async await break case catch class const continue debugger default delete do \
    else export extends finally for from function if import in instanceof let new of \
    return static super switch throw try typeof var void while with yield";
const TS_KEYWORDS: &str = "\
    abstract as async await break case catch class const continue declare default \
    delete do else enum export extends finally for from function if implements \
    import in instanceof interface keyof let namespace new of private protected \
    public readonly return static super switch throw try type typeof var void while \
    yield";
const JS_BUILTINS: &str = "\
    true false null undefined this NaN Infinity console window document Promise \
    Array Object String Number Math JSON Error string number boolean any unknown \
    never";
const JAVA_KEYWORDS: &str = "\
    abstract assert break case catch class continue default do else enum extends \
    final finally for if implements import instanceof interface native new package \
    private protected public record return static super switch synchronized throw \
    throws transient try var volatile while yield";
const JAVA_BUILTINS: &str = "\
    boolean byte char double float int long short void true false null this String \
    Object Integer List Map System";
const CS_KEYWORDS: &str = "\
    abstract as async await base break case catch class const continue default \
    delegate do else enum event explicit extern finally fixed for foreach get if \
    implicit in interface internal is lock namespace new operator out override \
    params private protected public readonly record ref return sealed set static \
    struct switch throw try typeof using var virtual void while yield";
const CS_BUILTINS: &str = "\
    bool byte char decimal double float int long object string true false null this \
    Console List Task";
const KOTLIN_KEYWORDS: &str = "\
    as break class companion continue data do else enum false for fun if import in \
    interface is lateinit object open override package private protected public \
    return sealed super suspend this throw try typealias val var when while";
const SWIFT_KEYWORDS: &str = "\
    as associatedtype async await break case catch class continue default defer do \
    else enum extension fallthrough for func guard if import in init inout let \
    mutating private protocol public repeat return self static struct switch throw \
    throws try var where while";
const JVM_BUILTINS: &str = "\
    true false null nil Int String Boolean Double Unit Any List Map Self println \
    print";
const RUST_KEYWORDS: &str = "\
    as async await break const continue crate dyn else enum extern fn for if impl in \
    let loop match mod move mut pub ref return static struct super trait type unsafe \
    use where while";
const RUST_BUILTINS: &str = "\
    true false self Self Some None Ok Err Option Result Box String Vec bool char str \
    u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64";
const GO_KEYWORDS: &str = "\
    break case chan const continue default defer else fallthrough for func go goto \
    if import interface map package range return select struct switch type var";
const GO_BUILTINS: &str = "\
    true false nil iota bool byte error int int64 float64 rune string uint uint64 \
    any append len cap make new panic";
const ZIG_KEYWORDS: &str = "\
    const var fn pub return if else while for switch break continue defer errdefer \
    try catch struct enum union comptime inline orelse test error";
const ZIG_BUILTINS: &str = "true false null undefined void u8 usize i32 u32 bool";
const PY_KEYWORDS: &str = "\
    and as assert async await break class continue def del elif else except finally \
    for from global if import in is lambda match case nonlocal not or pass raise \
    return try while with yield";
const PY_BUILTINS: &str = "\
    True False None self cls print len range int str list dict set tuple object \
    super isinstance open Exception";
const RUBY_KEYWORDS: &str = "\
    alias and begin break case class def do else elsif end ensure for if in module \
    next not or redo rescue retry return then unless until when while yield require \
    attr_accessor private include";
const RUBY_BUILTINS: &str = "true false nil self super puts print new raise lambda";
const PHP_KEYWORDS: &str = "\
    abstract as break case catch class const continue declare default do echo else \
    elseif extends final finally fn for foreach function if implements include \
    interface match namespace new private protected public require return static \
    switch throw trait try use while yield";
const PHP_BUILTINS: &str = "true false null array isset empty self";
const SH_KEYWORDS: &str = "\
    if then else elif fi for while until do done case esac in function return local \
    export readonly set unset shift exit source alias";
const SH_BUILTINS: &str = "\
    echo printf cd test read eval exec true false sudo apt apt-get git cargo npm \
    curl make cat grep sed awk ls mkdir rm cp mv chmod chown systemctl docker nib";
const PS_KEYWORDS: &str = "\
    begin break catch class continue do else elseif end exit filter finally for \
    foreach function if in param process return switch throw try until while";
const PS_BUILTINS: &str = "$true $false $null Write-Host Get-Item";
const SQL_KEYWORDS: &str = "\
    select from where and or not insert into values update set delete create table \
    index view drop alter add primary key foreign references join left right inner \
    outer on group by order having limit offset as distinct union all case when then \
    else end is in like between exists with begin commit rollback unique default \
    returning conflict do";
const SQL_BUILTINS: &str = "\
    null true false integer int text varchar real blob boolean count sum min max avg \
    coalesce now";
const LUA_KEYWORDS: &str = "\
    and break do else elseif end for function goto if in local not or repeat return \
    then until while";
const LUA_BUILTINS: &str = "true false nil self print pairs ipairs require table string";
const PERL_KEYWORDS: &str = "\
    my our local sub if elsif else unless while until for foreach return use package \
    last next require do";
const PERL_BUILTINS: &str = "print say shift push pop keys defined";
const HS_KEYWORDS: &str = "\
    case class data deriving do else if import in infixl infixr instance let module \
    newtype of then type where qualified as hiding";
const HS_BUILTINS: &str = "True False Nothing Just Maybe IO Int String Bool putStrLn map return";
const ELIXIR_KEYWORDS: &str = "\
    def defp defmodule defstruct defmacro do end fn if else unless case cond with \
    when import alias require use receive after try rescue catch";
const ELIXIR_BUILTINS: &str = "true false nil IO Enum Map self";
const SCALA_KEYWORDS: &str = "\
    abstract case catch class def do else enum extends final finally for given if \
    implicit import lazy match new object override package private protected return \
    sealed then throw trait try type using val var while with yield";
const DART_KEYWORDS: &str = "\
    abstract as async await break case catch class const continue default do else \
    enum extends final finally for if implements import in is late library mixin new \
    required return static super switch this throw try var void while with yield";
const R_KEYWORDS: &str = "if else repeat while function for in next break library return";
const R_BUILTINS: &str = "TRUE FALSE NULL NA Inf NaN c print";
const OCAML_KEYWORDS: &str = "\
    and as begin do done else end exception for fun function if in let match module \
    mutable of open rec sig struct then to try type val when while with";
const OCAML_BUILTINS: &str = "true false unit int string list option";
const LISP_KEYWORDS: &str = "\
    def defn defmacro defun defvar let fn lambda if when cond do loop recur ns \
    require setq progn";
const LISP_BUILTINS: &str = "nil true false t";
const NIX_KEYWORDS: &str = "let in with rec inherit if then else assert import";
const NIX_BUILTINS: &str = "true false null pkgs lib builtins";
const DOCKER_KEYWORDS: &str = "\
    FROM RUN CMD COPY ADD ENV ARG WORKDIR EXPOSE ENTRYPOINT USER VOLUME LABEL AS \
    HEALTHCHECK";
const MAKE_KEYWORDS: &str = "ifeq ifneq ifdef ifndef else endif include define endef .PHONY export";
const DATA_BUILTINS: &str = "true false null yes no on off ~";
const CSS_KEYWORDS: &str = "@media @import @font-face @keyframes @supports @layer !important";
const CSS_BUILTINS: &str =
    "inherit initial none auto block flex grid inline solid var calc rgb rgba hsl url";
const NO_WORDS: &str = "";

const fn code(names: &'static [&'static str]) -> Lang {
    Lang {
        names,
        line: &[],
        blocks: &[],
        quotes: "\"'",
        keywords: NO_WORDS,
        builtins: NO_WORDS,
        any_case: false,
        tick_is_lifetime: false,
        dollar_vars: false,
        scan: Scan::Code,
    }
}

const C_LIKE: Lang = Lang {
    line: &["//"],
    blocks: &[("/*", "*/", "c")],
    ..code(&[])
};
const HASH: Lang = Lang {
    line: &["#"],
    ..code(&[])
};

/// The languages nib highlights, with the names a fence may use for them.
const LANGS: &[Lang] = &[
    Lang {
        names: &["rust", "rs"],
        keywords: RUST_KEYWORDS,
        builtins: RUST_BUILTINS,
        quotes: "\"'",
        tick_is_lifetime: true,
        ..C_LIKE
    },
    Lang {
        names: &["c", "h"],
        keywords: C_KEYWORDS,
        builtins: C_TYPES,
        ..C_LIKE
    },
    Lang {
        names: &["cpp", "c++", "cxx", "cc", "hpp"],
        keywords: CPP_KEYWORDS,
        builtins: CPP_TYPES,
        ..C_LIKE
    },
    Lang {
        names: &["csharp", "cs", "c#"],
        keywords: CS_KEYWORDS,
        builtins: CS_BUILTINS,
        ..C_LIKE
    },
    Lang {
        names: &["java"],
        keywords: JAVA_KEYWORDS,
        builtins: JAVA_BUILTINS,
        ..C_LIKE
    },
    Lang {
        names: &["kotlin", "kt", "kts"],
        keywords: KOTLIN_KEYWORDS,
        builtins: JVM_BUILTINS,
        blocks: &[("\"\"\"", "\"\"\"", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["swift"],
        keywords: SWIFT_KEYWORDS,
        builtins: JVM_BUILTINS,
        blocks: &[("\"\"\"", "\"\"\"", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["scala", "sc"],
        keywords: SCALA_KEYWORDS,
        builtins: JVM_BUILTINS,
        blocks: &[("\"\"\"", "\"\"\"", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["dart"],
        keywords: DART_KEYWORDS,
        builtins: JS_BUILTINS,
        ..C_LIKE
    },
    Lang {
        names: &["go", "golang"],
        keywords: GO_KEYWORDS,
        builtins: GO_BUILTINS,
        blocks: &[("`", "`", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["zig"],
        keywords: ZIG_KEYWORDS,
        builtins: ZIG_BUILTINS,
        ..C_LIKE
    },
    Lang {
        names: &["javascript", "js", "jsx", "mjs", "cjs", "node"],
        keywords: JS_KEYWORDS,
        builtins: JS_BUILTINS,
        blocks: &[("`", "`", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["typescript", "ts", "tsx"],
        keywords: TS_KEYWORDS,
        builtins: JS_BUILTINS,
        blocks: &[("`", "`", "s"), ("/*", "*/", "c")],
        ..C_LIKE
    },
    Lang {
        names: &["python", "py", "python3", "py3"],
        keywords: PY_KEYWORDS,
        builtins: PY_BUILTINS,
        blocks: &[("\"\"\"", "\"\"\"", "s"), ("'''", "'''", "s")],
        ..HASH
    },
    Lang {
        names: &["ruby", "rb"],
        keywords: RUBY_KEYWORDS,
        builtins: RUBY_BUILTINS,
        blocks: &[("=begin", "=end", "c")],
        ..HASH
    },
    Lang {
        names: &["php"],
        line: &["//", "#"],
        blocks: &[("/*", "*/", "c")],
        keywords: PHP_KEYWORDS,
        builtins: PHP_BUILTINS,
        dollar_vars: true,
        ..code(&[])
    },
    Lang {
        names: &["perl", "pl"],
        keywords: PERL_KEYWORDS,
        builtins: PERL_BUILTINS,
        dollar_vars: true,
        ..HASH
    },
    Lang {
        names: &[
            "bash",
            "sh",
            "shell",
            "zsh",
            "console",
            "shell-session",
            "fish",
            "ksh",
        ],
        keywords: SH_KEYWORDS,
        builtins: SH_BUILTINS,
        dollar_vars: true,
        ..HASH
    },
    Lang {
        names: &["powershell", "ps1", "pwsh", "ps"],
        blocks: &[("<#", "#>", "c")],
        keywords: PS_KEYWORDS,
        builtins: PS_BUILTINS,
        any_case: true,
        dollar_vars: true,
        ..HASH
    },
    Lang {
        names: &["sql", "sqlite", "postgresql", "postgres", "mysql", "psql"],
        line: &["--"],
        blocks: &[("/*", "*/", "c")],
        keywords: SQL_KEYWORDS,
        builtins: SQL_BUILTINS,
        any_case: true,
        ..code(&[])
    },
    Lang {
        names: &["lua"],
        line: &["--"],
        blocks: &[("--[[", "]]", "c"), ("[[", "]]", "s")],
        keywords: LUA_KEYWORDS,
        builtins: LUA_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["haskell", "hs"],
        line: &["--"],
        blocks: &[("{-", "-}", "c")],
        quotes: "\"",
        keywords: HS_KEYWORDS,
        builtins: HS_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["elixir", "ex", "exs", "erlang", "erl"],
        line: &["#", "%"],
        blocks: &[("\"\"\"", "\"\"\"", "s")],
        keywords: ELIXIR_KEYWORDS,
        builtins: ELIXIR_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["r"],
        keywords: R_KEYWORDS,
        builtins: R_BUILTINS,
        ..HASH
    },
    Lang {
        names: &["ocaml", "ml", "fsharp", "fs"],
        blocks: &[("(*", "*)", "c")],
        quotes: "\"",
        keywords: OCAML_KEYWORDS,
        builtins: OCAML_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &[
            "clojure",
            "clj",
            "lisp",
            "elisp",
            "emacs-lisp",
            "scheme",
            "racket",
        ],
        line: &[";"],
        quotes: "\"",
        keywords: LISP_KEYWORDS,
        builtins: LISP_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["nix"],
        blocks: &[("/*", "*/", "c"), ("''", "''", "s")],
        keywords: NIX_KEYWORDS,
        builtins: NIX_BUILTINS,
        quotes: "\"",
        ..HASH
    },
    Lang {
        names: &["dockerfile", "docker", "containerfile"],
        keywords: DOCKER_KEYWORDS,
        ..HASH
    },
    Lang {
        names: &["makefile", "make", "mk"],
        keywords: MAKE_KEYWORDS,
        dollar_vars: true,
        ..HASH
    },
    Lang {
        names: &["css", "scss", "sass", "less"],
        line: &["//"],
        blocks: &[("/*", "*/", "c")],
        keywords: CSS_KEYWORDS,
        builtins: CSS_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["json", "jsonc", "json5"],
        line: &["//"],
        quotes: "\"",
        builtins: DATA_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &["yaml", "yml"],
        builtins: DATA_BUILTINS,
        ..HASH
    },
    Lang {
        names: &[
            "toml",
            "ini",
            "cfg",
            "conf",
            "properties",
            "nginx",
            "caddyfile",
        ],
        line: &["#", ";"],
        blocks: &[("\"\"\"", "\"\"\"", "s")],
        builtins: DATA_BUILTINS,
        ..code(&[])
    },
    Lang {
        names: &[
            "html", "xml", "svg", "xhtml", "rss", "atom", "vue", "svelte",
        ],
        scan: Scan::Markup,
        ..code(&[])
    },
    Lang {
        names: &["diff", "patch"],
        scan: Scan::Diff,
        ..code(&[])
    },
];

/// The language a fence names (`rust`, `Python`, `{.js}`), if nib highlights it.
fn lang_of(fence: &str) -> Option<&'static Lang> {
    // A fence's info string may carry options after the name (`rust,ignore`, `py title=x`).
    let name = fence
        .trim()
        .trim_start_matches('{')
        .trim_start_matches('.')
        .split([' ', ',', '{', '}'])
        .next()
        .unwrap_or("");
    if name.is_empty() || name.len() > 32 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    LANGS.iter().find(|l| l.names.contains(&name.as_str()))
}

/// Whether nib highlights the language a fence names.
pub(crate) fn knows(fence: &str) -> bool {
    lang_of(fence).is_some()
}

/// Appends `code` as HTML to `out`, highlighted when the fence names a known language and
/// escaped as it is otherwise. The text of the output is always exactly `code`.
pub(crate) fn highlight(fence: &str, code: &str, out: &mut String) {
    match lang_of(fence) {
        None => escape(code, out),
        Some(lang) => match lang.scan {
            Scan::Code => scan_code(lang, code, out),
            Scan::Markup => scan_markup(code, out),
            Scan::Diff => scan_diff(code, out),
        },
    }
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn span(class: &str, text: &str, out: &mut String) {
    if text.is_empty() {
        return;
    }
    let _ = write!(out, "<span class=\"hl-{class}\">");
    escape(text, out);
    out.push_str("</span>");
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The end of a string opened by `quote` at `start`: after its closing quote, or at the
/// end of the line when it is not closed there (a stray quote then colours one line only).
fn string_end(code: &str, start: usize, quote: char) -> usize {
    let mut chars = code[start + quote.len_utf8()..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + quote.len_utf8() + i;
        match c {
            '\\' => {
                chars.next();
            }
            '\n' => return at,
            c if c == quote => return at + c.len_utf8(),
            _ => {}
        }
    }
    code.len()
}

/// Whether a `'` at `start` opens a character literal (`'a'`, `'\n'`, `'\u{1F600}'`)
/// rather than a lifetime or label (`'a`, `'static`).
fn is_char_literal(code: &str, start: usize) -> bool {
    let rest = &code[start + 1..];
    let mut chars = rest.chars();
    match chars.next() {
        Some('\\') => true,
        Some(c) if c != '\'' && c != '\n' => chars.next() == Some('\''),
        _ => false,
    }
}

fn scan_code(lang: &Lang, code: &str, out: &mut String) {
    let mut i = 0;
    // Plain text is copied in runs, not a character at a time.
    let mut plain = 0;
    let bytes = code.as_bytes();
    while i < code.len() {
        let rest = &code[i..];
        let c = rest.chars().next().unwrap_or(' ');
        let prev_ident = code[..i].chars().next_back().is_some_and(is_ident);
        let mut token: Option<(usize, &str)> = None;
        if let Some(&(open, close, class)) = lang.blocks.iter().find(|b| rest.starts_with(b.0)) {
            let end = rest[open.len()..]
                .find(close)
                .map_or(code.len(), |e| i + open.len() + e + close.len());
            token = Some((end, class));
        } else if lang.line.iter().any(|l| rest.starts_with(l))
            // `#` starts a shell comment only at the start of a word (`${#x}`, `a#b`).
            && !(rest.starts_with('#') && lang.dollar_vars && i > 0 && !bytes[i - 1].is_ascii_whitespace())
        {
            token = Some((i + rest.find('\n').unwrap_or(rest.len()), "c"));
        } else if lang.quotes.contains(c)
            && !(c == '\'' && lang.tick_is_lifetime && !is_char_literal(code, i))
            && !(c == '\'' && prev_ident)
        {
            token = Some((string_end(code, i, c), "s"));
        } else if c.is_ascii_digit() && !prev_ident {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                .unwrap_or(rest.len());
            // `1..10` is two numbers and a range, not one number.
            let len = rest[..len].find("..").unwrap_or(len);
            token = Some((i + len.max(1), "n"));
        } else if lang.dollar_vars && c == '$' {
            let name = &rest[1..];
            let len = if name.starts_with('{') {
                name.find('}').map_or(1, |e| e + 1)
            } else {
                name.find(|ch: char| !is_ident(ch)).unwrap_or(name.len())
            };
            if len > 0 {
                token = Some((i + 1 + len, "v"));
            }
        } else if (is_ident(c) || c == '#' || c == '@' || c == '!' || c == '.') && !prev_ident {
            let skip = usize::from(!is_ident(c));
            let len = rest[skip..]
                .find(|ch: char| !(is_ident(ch) || ch == '-' && lang.dollar_vars))
                .map_or(rest.len(), |e| e + skip);
            let word = &rest[..len];
            let is = |list: &str| {
                let mut words = list.split(' ');
                if lang.any_case {
                    words.any(|k| k.eq_ignore_ascii_case(word))
                } else {
                    words.any(|k| k == word)
                }
            };
            // `'a` and `'static` in Rust are lifetimes, whatever the word.
            let lifetime = lang.tick_is_lifetime && code[..i].ends_with('\'');
            if len > skip && !lifetime {
                if is(lang.keywords) {
                    token = Some((i + len, "k"));
                } else if is(lang.builtins) {
                    token = Some((i + len, "b"));
                } else if skip == 0 && rest[len..].starts_with('(') {
                    token = Some((i + len, "f"));
                } else if skip == 0 && rest[len..].starts_with('!') && lang.tick_is_lifetime {
                    // A Rust macro call: `println!`.
                    token = Some((i + len + 1, "f"));
                } else if skip == 0 {
                    // A plain word: skip it whole, so a keyword inside it is not found.
                    i += len;
                    continue;
                }
            } else if lifetime {
                i += len;
                continue;
            }
        }
        match token {
            Some((end, class)) if end > i => {
                escape(&code[plain..i], out);
                span(class, &code[i..end], out);
                i = end;
                plain = end;
            }
            _ => i += c.len_utf8(),
        }
    }
    escape(&code[plain..], out);
}

/// HTML and XML: comments, tag names, attribute names and quoted values.
fn scan_markup(code: &str, out: &mut String) {
    let mut i = 0;
    let mut plain = 0;
    while i < code.len() {
        let rest = &code[i..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").map_or(code.len(), |e| i + e + 3);
            escape(&code[plain..i], out);
            span("c", &code[i..end], out);
            i = end;
            plain = end;
            continue;
        }
        let opens_tag = rest.starts_with('<')
            && rest[1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?');
        if !opens_tag {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        escape(&code[plain..i], out);
        let tag_end = rest.find('>').map_or(code.len(), |e| i + e + 1);
        let tag = &code[i..tag_end];
        // The name, with the `/` of a closing tag: `a` in `<a href>`, `/a` in `</a>`.
        let body = &tag[1..];
        let slash = usize::from(body.starts_with('/'));
        let name_len = slash
            + body[slash..]
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(body.len() - slash);
        escape("<", out);
        span("k", &tag[1..1 + name_len], out);
        let mut j = 1 + name_len;
        let mut attr_plain = j;
        while j < tag.len() {
            let r = &tag[j..];
            let c = r.chars().next().unwrap_or(' ');
            if c == '"' || c == '\'' {
                escape(&tag[attr_plain..j], out);
                let end = r[1..].find(c).map_or(tag.len(), |e| j + e + 2);
                span("s", &tag[j..end], out);
                j = end;
                attr_plain = end;
            } else if c.is_alphabetic() {
                escape(&tag[attr_plain..j], out);
                let len = r
                    .find(|ch: char| !(ch.is_alphanumeric() || ch == '-' || ch == ':' || ch == '_'))
                    .unwrap_or(r.len());
                span("b", &r[..len], out);
                j += len;
                attr_plain = j;
            } else {
                j += c.len_utf8();
            }
        }
        escape(&tag[attr_plain..], out);
        i = tag_end;
        plain = tag_end;
    }
    escape(&code[plain..], out);
}

/// Unified diffs: added and removed lines, and the hunk and file headers.
fn scan_diff(code: &str, out: &mut String) {
    for line in code.split_inclusive('\n') {
        let class = if line.starts_with("+++") || line.starts_with("---") {
            "k"
        } else if line.starts_with('+') {
            "ins"
        } else if line.starts_with('-') {
            "del"
        } else if line.starts_with("@@") || line.starts_with("diff ") {
            "c"
        } else {
            ""
        };
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        if class.is_empty() {
            escape(body, out);
        } else {
            span(class, body, out);
        }
        out.push_str(newline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(lang: &str, code: &str) -> String {
        let mut out = String::new();
        highlight(lang, code, &mut out);
        out
    }

    /// The text of highlighted HTML: tags dropped, the four entities decoded.
    fn text_of(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    }

    #[test]
    fn tokens_get_their_classes() {
        // (fence, code, a fragment the output must contain)
        let cases = [
            (
                "rust",
                "fn main() {}",
                r#"<span class="hl-k">fn</span> <span class="hl-f">main</span>()"#,
            ),
            ("rs", "let s: &'static str = \"a\\\"b\";", r#"&amp;'static"#),
            (
                "rs",
                "let s = \"a\\\"b\";",
                r#"<span class="hl-s">&quot;a\&quot;b&quot;</span>"#,
            ),
            ("rust", "let c = 'x';", r#"<span class="hl-s">'x'</span>"#),
            (
                "rust",
                "println!(\"x\")",
                r#"<span class="hl-f">println!</span>"#,
            ),
            (
                "rust",
                "for i in 1..10 {}",
                r#"<span class="hl-n">1</span>..<span class="hl-n">10</span>"#,
            ),
            ("rust", "// note\nx", r#"<span class="hl-c">// note</span>"#),
            (
                "python",
                "def f(x):\n    return None  # done",
                r#"<span class="hl-k">def</span>"#,
            ),
            (
                "python",
                "def f(x):\n    return None  # done",
                r#"<span class="hl-b">None</span>  <span class="hl-c"># done</span>"#,
            ),
            (
                "py",
                "s = \"\"\"a\nb\"\"\"",
                "<span class=\"hl-s\">&quot;&quot;&quot;a\nb&quot;&quot;&quot;</span>",
            ),
            (
                "js",
                "const x = `a ${b}`;",
                r#"<span class="hl-s">`a ${b}`</span>"#,
            ),
            ("JavaScript", "if (a) {}", r#"<span class="hl-k">if</span>"#),
            (
                "sql",
                "SELECT * FROM t",
                r#"<span class="hl-k">SELECT</span> * <span class="hl-k">FROM</span>"#,
            ),
            (
                "bash",
                "echo $HOME # c",
                r#"<span class="hl-v">$HOME</span> <span class="hl-c"># c</span>"#,
            ),
            (
                "bash",
                "echo ${#arr}",
                r#"<span class="hl-v">${#arr}</span>"#,
            ),
            (
                "c",
                "#include <stdio.h>",
                r#"<span class="hl-k">#include</span>"#,
            ),
            (
                "cpp",
                "std::vector<int> v;",
                r#"<span class="hl-b">std</span>"#,
            ),
            (
                "go",
                "func main() { x := `raw` }",
                r#"<span class="hl-s">`raw`</span>"#,
            ),
            (
                "html",
                "<a href=\"/x\">t</a>",
                r#"&lt;<span class="hl-k">a</span> <span class="hl-b">href</span>=<span class="hl-s">&quot;/x&quot;</span>&gt;t&lt;<span class="hl-k">/a</span>&gt;"#,
            ),
            (
                "xml",
                "<!-- c --><x/>",
                r#"<span class="hl-c">&lt;!-- c --&gt;</span>"#,
            ),
            (
                "diff",
                "-old\n+new\n same",
                "<span class=\"hl-del\">-old</span>\n<span class=\"hl-ins\">+new</span>\n same",
            ),
            (
                "toml",
                "[a]\nb = true # c",
                r#"<span class="hl-b">true</span> <span class="hl-c"># c</span>"#,
            ),
            (
                "json",
                "{\"a\": null}",
                r#"<span class="hl-s">&quot;a&quot;</span>: <span class="hl-b">null</span>"#,
            ),
            ("yaml", "a: yes # c", r#"<span class="hl-b">yes</span>"#),
            (
                "css",
                "a { color: red } /* c */",
                r#"<span class="hl-c">/* c */</span>"#,
            ),
            ("rust,ignore", "fn", r#"<span class="hl-k">fn</span>"#),
            ("{.python}", "pass", r#"<span class="hl-k">pass</span>"#),
            // A keyword inside a longer word is not one.
            ("rust", "format_fn iffy", "format_fn iffy"),
            // Unknown languages are escaped only.
            ("brainfuck", "<+>", "&lt;+&gt;"),
            ("", "<b>", "&lt;b&gt;"),
        ];
        for (lang, code, want) in cases {
            let got = hl(lang, code);
            assert!(
                got.contains(want),
                "{lang} {code:?}:\n got {got}\nwant {want}"
            );
            assert_eq!(text_of(&got), code, "{lang}: the text must survive");
        }
    }

    #[test]
    fn at_least_thirty_languages_are_known() {
        assert!(LANGS.len() >= 30, "{}", LANGS.len());
        for name in [
            "rust",
            "python",
            "javascript",
            "typescript",
            "go",
            "c",
            "cpp",
            "csharp",
            "java",
            "kotlin",
            "swift",
            "ruby",
            "php",
            "bash",
            "powershell",
            "sql",
            "html",
            "xml",
            "css",
            "scss",
            "json",
            "yaml",
            "toml",
            "lua",
            "perl",
            "haskell",
            "elixir",
            "scala",
            "r",
            "dart",
            "zig",
            "ocaml",
            "clojure",
            "nix",
            "dockerfile",
            "makefile",
            "diff",
            "ini",
        ] {
            assert!(knows(name), "{name}");
        }
    }

    #[test]
    fn any_input_keeps_its_text_and_never_panics() {
        // Unclosed strings and comments, stray quotes, multi-byte text at every edge.
        let pieces = [
            "\"", "'", "`", "/*", "*/", "//", "#", "<!--", "<", ">", "&", "$", "${", "'''",
            "\"\"\"", "é", "😀", "\n", " ", "a", "1", "1.5", "..", "fn", "if", "\\", "<a b='c",
            "-", "+", "@@", "--[[", "(*", "{-",
        ];
        let mut next = crate::test_rng(12345);
        for _ in 0..3000 {
            let mut code = String::new();
            for _ in 0..next(12) {
                code.push_str(pieces[next(pieces.len())]);
            }
            for lang in LANGS {
                let got = hl(lang.names[0], &code);
                assert_eq!(text_of(&got), code, "{} {code:?}", lang.names[0]);
            }
        }
    }
}
