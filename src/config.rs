//! Command-line parsing and the one [`Config`] every other module reads. Settings come from
//! flags, then `NIB_*` environment variables, then `nib.toml`, then defaults; the result is
//! validated completely before the socket is bound, so a bad key or value stops start-up
//! with a message naming it. Handlers never look at the environment: they get a `&Config`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::StartupError;

/// What the user asked nib to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Serve,
    Init { dir: PathBuf },
    Build { out: PathBuf },
    New { title: String },
    Shorten { url: String, slug: Option<String> },
    Links,
    Check,
    Backup { file: PathBuf },
    Restore { file: PathBuf },
    Token { reset: bool },
    Help,
    Version,
}

/// The command line as typed, before the environment and `nib.toml` are consulted.
#[derive(Debug, Default)]
pub struct Args {
    pub(crate) root: Option<PathBuf>,
    pub(crate) db: Option<PathBuf>,
    pub(crate) listen: Option<String>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) command: Option<Command>,
}

pub(crate) const USAGE: &str = "\
usage: nib [--root DIR] [--db PATH] [--listen ADDR] [--config FILE] [COMMAND]

commands:
  serve                   serve the site (the default)
  init DIR                start a new site in DIR (posts/, nib.toml, static/)
  build --out DIR         export the public site as static files
  new \"Title\"             create posts/YYYY-MM-DD-title.md
  shorten URL [--slug S]  create a short link and print it
  links                   list short links
  check                   validate posts and config; exit 1 on problems
  backup FILE             online copy of the database
  restore FILE            replace the database with a backup (server stopped)
  token [--reset]         print or rotate the admin token

environment: NIB_ROOT NIB_DB NIB_LISTEN NIB_BASE_URL NIB_ADMIN_TOKEN";

impl Args {
    /// Parses `std::env::args()` without the program name. Global flags may stand before
    /// or after the command, in `--flag value` or `--flag=value` form.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, StartupError> {
        let Tokens {
            words,
            mut flags,
            switches,
        } = Tokens::of(args)?;
        let mut out = Args {
            root: flags.remove("root").map(PathBuf::from),
            db: flags.remove("db").map(PathBuf::from),
            listen: flags.remove("listen"),
            config: flags.remove("config").map(PathBuf::from),
            ..Args::default()
        };
        let has = |s: &str| switches.iter().any(|w| w == s);
        if has("help") {
            out.command = Some(Command::Help);
            return Ok(out);
        }
        if has("version") {
            out.command = Some(Command::Version);
            return Ok(out);
        }
        let mut words = words.into_iter();
        let name = words.next();
        let arg = words.next();
        if let Some(extra) = words.next() {
            return Err(StartupError::Usage(format!(
                "unexpected argument {extra:?}"
            )));
        }
        let command = Command::of(name.as_deref(), arg.clone(), &mut flags, has("reset"))?;
        let takes_arg = matches!(
            command,
            Command::New { .. }
                | Command::Init { .. }
                | Command::Shorten { .. }
                | Command::Backup { .. }
                | Command::Restore { .. }
                | Command::Build { .. }
        );
        if arg.is_some() && !takes_arg {
            return Err(StartupError::Usage(format!(
                "unexpected argument {:?}",
                arg.unwrap_or_default()
            )));
        }
        if let Some(flag) = flags.keys().next() {
            return Err(StartupError::Usage(format!(
                "--{flag} does not apply to this command"
            )));
        }
        if has("reset") && !matches!(command, Command::Token { .. }) {
            return Err(StartupError::Usage("--reset only applies to token".into()));
        }
        out.command = Some(command);
        Ok(out)
    }
}

/// The command line split into words, flags with their values, and switches.
struct Tokens {
    words: Vec<String>,
    flags: HashMap<&'static str, String>,
    switches: Vec<String>,
}

impl Tokens {
    fn of<I: IntoIterator<Item = String>>(args: I) -> Result<Tokens, StartupError> {
        let mut t = Tokens {
            words: Vec::new(),
            flags: HashMap::new(),
            switches: Vec::new(),
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                t.words.extend(it.by_ref());
                break;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                t.words.push(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            let known: &'static str = match name {
                "root" => "root",
                "db" => "db",
                "listen" => "listen",
                "config" => "config",
                "out" => "out",
                "slug" => "slug",
                "reset" | "help" | "version" => {
                    t.switches.push(name.to_string());
                    continue;
                }
                _ => {
                    return Err(StartupError::Usage(format!(
                        "unknown flag --{name}\n{USAGE}"
                    )));
                }
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| StartupError::Usage(format!("--{name} needs a value")))?,
            };
            t.flags.insert(known, value);
        }
        Ok(t)
    }
}

impl Command {
    /// The command named `name`, with its one argument `arg` and the flags it takes (taken
    /// out of `flags`, so those left over apply to no command).
    fn of(
        name: Option<&str>,
        arg: Option<String>,
        flags: &mut HashMap<&'static str, String>,
        reset: bool,
    ) -> Result<Command, StartupError> {
        let need = |what: &str| {
            arg.clone()
                .ok_or_else(|| StartupError::Usage(format!("{} needs {what}", name.unwrap_or(""))))
        };
        Ok(match name {
            None | Some("serve") => Command::Serve,
            Some("init") => Command::Init {
                dir: need("a folder")?.into(),
            },
            Some("build") => Command::Build {
                out: flags
                    .remove("out")
                    .or(arg.clone())
                    .map(PathBuf::from)
                    .ok_or_else(|| StartupError::Usage("build needs --out DIR".into()))?,
            },
            Some("new") => Command::New {
                title: need("a title")?,
            },
            Some("shorten") => Command::Shorten {
                url: need("a URL")?,
                slug: flags.remove("slug"),
            },
            Some("links") => Command::Links,
            Some("check") => Command::Check,
            Some("backup") => Command::Backup {
                file: need("a file")?.into(),
            },
            Some("restore") => Command::Restore {
                file: need("a file")?.into(),
            },
            Some("token") => Command::Token { reset },
            Some("help") => Command::Help,
            Some(other) => {
                return Err(StartupError::Usage(format!(
                    "unknown command {other:?}\n{USAGE}"
                )));
            }
        })
    }
}

/// `nib.toml` as written by the user. Every key is optional; an unknown key is an error
/// (serde names it), so a typo never silently does nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    title: Option<String>,
    description: Option<String>,
    author: Option<String>,
    base_url: Option<String>,
    listen: Option<String>,
    per_page: Option<i64>,
    redirect_status: Option<i64>,
    share_url: Option<String>,
    max_connections: Option<i64>,
    max_rss_kb: Option<i64>,
    drain_seconds: Option<i64>,
    max_post_kb: Option<i64>,
    admin_token: Option<String>,
    nav: Option<Vec<NavLink>>,
    footer: Option<Vec<NavLink>>,
    image: Option<String>,
    timezone: Option<String>,
    old_permalinks: Option<String>,
}

/// A link of the site's navigation (`[[nav]]`) or footer (`[[footer]]`) in `nib.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NavLink {
    pub title: String,
    pub url: String,
}

/// The most links `nav` or `footer` may hold: a header, not a sitemap.
const MAX_NAV_LINKS: usize = 20;

pub(crate) const DEFAULT_SHARE_URL: &str = "https://twitter.com/intent/tweet?text={text}&url={url}";

/// The validated settings of one run. Built once, then passed down by reference.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub posts_dir: PathBuf,
    pub static_dir: PathBuf,
    pub db_path: PathBuf,
    pub listen: SocketAddr,
    /// Without a trailing slash. `None` until the socket is bound when not configured: the
    /// default is then `http://` plus the address actually bound.
    pub base_url: Option<String>,
    pub title: String,
    pub description: String,
    pub author: String,
    pub per_page: u32,
    pub redirect_status: u16,
    pub share_url: String,
    pub max_connections: usize,
    pub max_rss_kb: Option<u64>,
    /// How long a stop or restart lets answers in flight (downloads) finish.
    pub drain_seconds: u64,
    /// The largest post file indexed, in KiB; a larger one is skipped as broken.
    pub max_post_kb: u64,
    pub admin_token: Option<String>,
    /// The header's links; without `[[nav]]`, Posts, Tags and Feed.
    pub nav: Vec<NavLink>,
    /// Links added to the footer line.
    pub footer: Vec<NavLink>,
    /// The card image (`og:image`) of pages without one: a path on the site or a URL.
    pub image: Option<String>,
    /// The site's `timezone`: dates written without an offset are read in it, and
    /// "today" is its day.
    pub timezone: crate::dates::Zone,
    /// `old_permalinks`: the URL pattern of the blog's previous home, whose paths answer
    /// 301 to the post they name.
    pub old_permalinks: Option<crate::oldurls::Pattern>,
}

impl Config {
    /// Combines flags, the given environment and `nib.toml` (flag > env > file > default)
    /// and validates the result.
    pub fn load(args: &Args, env: &HashMap<String, String>) -> Result<Config, StartupError> {
        let env_path = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = args
            .root
            .clone()
            .or_else(|| env_path("NIB_ROOT"))
            .unwrap_or_else(|| PathBuf::from("."));
        let config_path = args.config.clone();
        let file = match &config_path {
            Some(p) => read_file_config(p, true)?,
            None => read_file_config(&root.join("nib.toml"), false)?,
        };
        let db_path = args
            .db
            .clone()
            .or_else(|| env_path("NIB_DB"))
            .unwrap_or_else(|| root.join("nib.db"));
        let listen_text = args
            .listen
            .clone()
            .or_else(|| env.get("NIB_LISTEN").filter(|v| !v.is_empty()).cloned())
            .or(file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = parse_listen(&listen_text)?;
        let base_url = env
            .get("NIB_BASE_URL")
            .filter(|v| !v.is_empty())
            .cloned()
            .or(file.base_url.clone())
            .map(|b| validate_base_url(&b))
            .transpose()?;
        let per_page = in_range("per_page", file.per_page, 10, 1, 1000)? as u32;
        let redirect_status = redirect_status(file.redirect_status)?;
        let share_url = share_url(file.share_url.clone())?;
        let max_connections =
            in_range("max_connections", file.max_connections, 256, 1, 100_000)? as usize;
        let drain_seconds = in_range("drain_seconds", file.drain_seconds, 30, 1, 3600)? as u64;
        let max_rss_kb = match file.max_rss_kb {
            None => None,
            Some(v) => Some(in_range("max_rss_kb", Some(v), 0, 1024, 64 * 1024 * 1024)? as u64),
        };
        let max_post_kb = in_range("max_post_kb", file.max_post_kb, 1024, 1, 64 * 1024)? as u64;
        let admin_token = admin_token(env, file.admin_token.clone())?;
        let nav = match file.nav {
            Some(links) => nav_links("nav", links)?,
            None => default_nav(),
        };
        let footer = nav_links("footer", file.footer.unwrap_or_default())?;
        let image = file
            .image
            .map(|i| {
                let i = i.trim().to_string();
                if link_url_ok(&i) {
                    Ok(i)
                } else {
                    Err(StartupError::Config(
                        "image: must start with / or http:// or https://".into(),
                    ))
                }
            })
            .transpose()?;
        let timezone = timezone(file.timezone.as_deref())?;
        let old_permalinks = file
            .old_permalinks
            .as_deref()
            .map(|p| {
                crate::oldurls::Pattern::parse(p)
                    .map_err(|e| StartupError::Config(format!("old_permalinks: {e}")))
            })
            .transpose()?;
        let text = |v: Option<String>, d: &str| {
            v.map(|s| s.trim().to_string())
                .unwrap_or_else(|| d.to_string())
        };
        Ok(Config {
            posts_dir: root.join("posts"),
            static_dir: root.join("static"),
            db_path,
            listen,
            base_url,
            title: text(file.title, "nib"),
            description: text(file.description, ""),
            author: text(file.author, ""),
            per_page,
            redirect_status,
            share_url,
            max_connections,
            max_rss_kb,
            drain_seconds,
            max_post_kb,
            admin_token,
            nav,
            footer,
            image,
            timezone,
            old_permalinks,
        })
    }

    /// The site's absolute base URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.as_deref().unwrap_or("http://127.0.0.1:8080")
    }

    /// A fingerprint of every setting that changes how a page looks, mixed into ETags so a
    /// changed title or base URL is never answered with a stale 304.
    pub fn fingerprint(&self) -> u64 {
        let mut h = crate::hash::Fnv::new();
        for part in [
            self.base(),
            &self.title,
            &self.description,
            &self.author,
            &self.share_url,
            env!("CARGO_PKG_VERSION"),
        ] {
            h.write(part.as_bytes());
            h.write(&[0]);
        }
        h.write(&self.per_page.to_le_bytes());
        // A marker byte before each list, so a link cannot move from one to the other
        // unseen.
        for (list, links) in [&self.nav, &self.footer].into_iter().enumerate() {
            h.write(&[list as u8 + 1]);
            for link in links {
                for part in [&link.title, &link.url] {
                    h.write(part.as_bytes());
                    h.write(&[0]);
                }
            }
        }
        h.write(self.image.as_deref().unwrap_or("").as_bytes());
        h.write(&[0]);
        // Dates are shown in the site's zone when they were written without one.
        h.write(self.timezone.key().as_bytes());
        h.finish()
    }
}

/// The header's links when `nib.toml` names none.
fn default_nav() -> Vec<NavLink> {
    [("Posts", "/"), ("Tags", "/tags/"), ("Feed", "/feed.xml")]
        .into_iter()
        .map(|(title, url)| NavLink {
            title: title.into(),
            url: url.into(),
        })
        .collect()
}

/// `nav` and `footer`: at most [`MAX_NAV_LINKS`] links, each with a title and a URL that is
/// a path on this site (`/about/`) or an http(s) address.
fn nav_links(key: &str, links: Vec<NavLink>) -> Result<Vec<NavLink>, StartupError> {
    if links.len() > MAX_NAV_LINKS {
        return Err(StartupError::Config(format!(
            "{key}: {} links is too many (at most {MAX_NAV_LINKS})",
            links.len()
        )));
    }
    links
        .into_iter()
        .enumerate()
        .map(|(i, link)| {
            let bad = |what: &str| StartupError::Config(format!("{key}: link {}: {what}", i + 1));
            let (title, url) = (link.title.trim(), link.url.trim());
            if title.is_empty() || title.chars().any(char::is_control) {
                return Err(bad("title must be some text on one line"));
            }
            if !link_url_ok(url) {
                return Err(bad("url must start with / or http:// or https://"));
            }
            Ok(NavLink {
                title: title.into(),
                url: url.into(),
            })
        })
        .collect()
}

/// `timezone`: `UTC` (the default), a fixed offset such as `+02:00`, or a zone of the
/// system's tz database (`Europe/Berlin`, read from `/usr/share/zoneinfo` at start-up).
fn timezone(v: Option<&str>) -> Result<crate::dates::Zone, StartupError> {
    let Some(text) = v else {
        return Ok(crate::dates::Zone::UTC);
    };
    crate::dates::Zone::parse(text, Path::new("/usr/share/zoneinfo"))
        .map_err(|e| StartupError::Config(format!("timezone: {e}")))
}

/// Whether `url` is a path on this site (`/about/`, not `//elsewhere`) or an http(s)
/// address, on one line: what a link or image setting may hold.
fn link_url_ok(url: &str) -> bool {
    let local = url.starts_with('/') && !url.starts_with("//");
    let web = url.starts_with("https://") || url.starts_with("http://");
    (local || web) && !url.chars().any(|c| c.is_control() || c == ' ')
}

/// `redirect_status`: 302 (the default) or 301.
fn redirect_status(v: Option<i64>) -> Result<u16, StartupError> {
    match v.unwrap_or(302) {
        s @ (301 | 302) => Ok(s as u16),
        other => Err(StartupError::Config(format!(
            "redirect_status: {other} is not allowed (use 302 or 301)"
        ))),
    }
}

/// `share_url`: an http(s) URL with `{url}` in it.
fn share_url(v: Option<String>) -> Result<String, StartupError> {
    let url = v.unwrap_or_else(|| DEFAULT_SHARE_URL.into());
    if !(url.starts_with("https://") || url.starts_with("http://")) || !url.contains("{url}") {
        return Err(StartupError::Config(
            "share_url: must be an http(s) URL containing {url}".into(),
        ));
    }
    Ok(url)
}

/// The admin token from `NIB_ADMIN_TOKEN` or `admin_token`, if set: at least 16 characters.
fn admin_token(
    env: &HashMap<String, String>,
    file: Option<String>,
) -> Result<Option<String>, StartupError> {
    let token = env
        .get("NIB_ADMIN_TOKEN")
        .filter(|v| !v.is_empty())
        .cloned()
        .or(file);
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        return Err(StartupError::Config(
            "admin_token: must be at least 16 characters".into(),
        ));
    }
    Ok(token)
}

fn read_file_config(path: &Path, required: bool) -> Result<FileConfig, StartupError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default());
        }
        Err(e) => return Err(StartupError::Config(format!("{}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| {
        // toml's message spans several lines with a caret diagram; the first line plus the
        // key it names is what a user needs in a log.
        let msg = e.message().trim().to_string();
        match e.span().and_then(|s| text.get(..s.start)) {
            Some(before) => {
                let line = before.matches('\n').count() + 1;
                // A type error's message names the type but not the key; the line does.
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let key = text[start..]
                    .lines()
                    .next()
                    .and_then(|l| l.split_once('='))
                    .map(|(k, _)| k.trim());
                match key {
                    Some(k) if !msg.contains(k) => {
                        StartupError::Config(format!("{} line {line}: {k}: {msg}", path.display()))
                    }
                    _ => StartupError::Config(format!("{} line {line}: {msg}", path.display())),
                }
            }
            None => StartupError::Config(format!("{}: {msg}", path.display())),
        }
    })
}

fn in_range(
    key: &str,
    v: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, StartupError> {
    match v {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(StartupError::Config(format!(
            "{key}: {v} is out of range ({min} to {max})"
        ))),
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, StartupError> {
    let t = text.trim();
    let t = t
        .strip_prefix("localhost:")
        .map(|p| format!("127.0.0.1:{p}"));
    let t = t.as_deref().unwrap_or(text.trim());
    t.parse().map_err(|_| {
        StartupError::Config(format!(
            "listen: {text:?} is not an address like 127.0.0.1:8080"
        ))
    })
}

fn validate_base_url(text: &str) -> Result<String, StartupError> {
    let bad = |why: &str| StartupError::Config(format!("base_url: {text:?} {why}"));
    let url = url::Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be an http or https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Result<Args, StartupError> {
        Args::parse(s.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_commands_and_global_flags_anywhere() {
        let cases: &[(&[&str], Command)] = &[
            (&[], Command::Serve),
            (&["serve", "--listen", "127.0.0.1:0"], Command::Serve),
            (&["--root=/x", "check"], Command::Check),
            (
                &["new", "Hello World"],
                Command::New {
                    title: "Hello World".into(),
                },
            ),
            (&["build", "--out", "o"], Command::Build { out: "o".into() }),
            (
                &["shorten", "https://e.com", "--slug", "s"],
                Command::Shorten {
                    url: "https://e.com".into(),
                    slug: Some("s".into()),
                },
            ),
            (&["token", "--reset"], Command::Token { reset: true }),
            (
                &["backup", "f.db"],
                Command::Backup {
                    file: "f.db".into(),
                },
            ),
        ];
        for (input, want) in cases {
            let a = args(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(a.command.as_ref(), Some(want), "{input:?}");
        }
        assert_eq!(
            args(&["--root=/x", "check"]).unwrap().root,
            Some("/x".into())
        );
    }

    #[test]
    fn rejects_bad_usage() {
        for input in [
            &["bogus"][..],
            &["--nope"],
            &["new"],
            &["check", "extra"],
            &["links", "--slug", "x"],
            &["--root"],
            &["serve", "--reset"],
        ] {
            assert!(args(input).is_err(), "{input:?} should fail");
        }
    }

    fn load_with(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, StartupError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nib.toml"), toml_text).unwrap();
        let a = Args {
            root: Some(dir.path().to_path_buf()),
            ..Args::default()
        };
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&a, &env)
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            ("titel = 'x'", "titel"),
            ("per_page = 0", "per_page"),
            ("timezone = 'Mars/Olympus'", "timezone"),
            ("timezone = '+25:00'", "timezone"),
            ("old_permalinks = '/:year/:month/'", "old_permalinks"),
            ("old_permalinks = '/:yday/:slug/'", "old_permalinks"),
            ("per_page = 'ten'", "per_page"),
            ("redirect_status = 307", "redirect_status"),
            ("base_url = 'ftp://x'", "base_url"),
            ("listen = 'nowhere'", "listen"),
            ("share_url = 'https://x/'", "share_url"),
            ("max_rss_kb = 5", "max_rss_kb"),
            ("max_post_kb = 0", "max_post_kb"),
            ("max_post_kb = 100000", "max_post_kb"),
            ("max_post_kb = '1 MB'", "max_post_kb"),
            (
                "[[nav]]\ntitle = 'About'\nurl = 'about'",
                "nav: link 1: url",
            ),
            (
                "[[nav]]\ntitle = ' '\nurl = '/about/'",
                "nav: link 1: title",
            ),
            ("[[footer]]\ntitle = 'x'\nurl = '//evil.example/'", "footer"),
            (
                "[[footer]]\ntitle = 'x'\nurl = 'javascript:alert(1)'",
                "footer",
            ),
            ("[[nav]]\ntitle = 'x'\nhref = '/'", "href"),
            ("image = 'card.png'", "image"),
        ];
        for (text, key) in cases {
            let err = load_with(text, &[]).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let c = load_with(
            "listen = '127.0.0.1:9000'\nbase_url = 'https://a.example/'",
            &[],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.base(), "https://a.example");
        let c = load_with(
            "listen = '127.0.0.1:9000'",
            &[("NIB_LISTEN", "127.0.0.1:9001")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9001);
        let c = load_with("", &[]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.per_page, 10);
        assert_eq!(c.redirect_status, 302);
        assert_eq!(c.max_post_kb, 1024);
        assert_eq!(load_with("max_post_kb = 64", &[]).unwrap().max_post_kb, 64);
    }
}
