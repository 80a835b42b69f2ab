//! The route table: every path nib answers, in one place. [`NAMES`] lists the fixed first
//! segments of the site's paths and what each is for; [`Route::parse`] turns a decoded path
//! into a [`Route`], and [`Route::methods`] says which methods it answers. From these come
//! the routing itself (`handlers::route`), the `Allow` header of a 405, the names a short
//! link may never take, the pages `nib build` exports and the sitemap lists, the lines of
//! `robots.txt`, and which of the site's own URLs a short link may point to.
//!
//! This module is pure data and parsing and depends on nothing else in nib, so the
//! services that must know the site's own names (the short-link rules) read it too.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tiny_http::Method;

/// The most bytes of a generated code or custom slug.
pub(crate) const MAX_SLUG: usize = 64;

/// Whether `s` can be a short link's code or slug: `[0-9A-Za-z_-]{1,64}` (also what the
/// redirect route accepts before asking the database).
pub(crate) fn is_code_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SLUG
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Lowercase, ASCII-alphanumeric words joined by `-`: the form of slugs and tag URLs.
/// Other letters (é, ß, 日) are kept as they are, lowercased.
pub(crate) fn slugify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The key a tag is compared, stored and linked by (`/tags/KEY/`): its slug, with `+`, `#`
/// and `&` spelled out first, so `Rust` and `rust` are one tag but `C++`, `C#` and `c`
/// stay three (`c-plus-plus`, `c-sharp`, `c`), with URLs a reader can still read.
pub(crate) fn tag_key(name: &str) -> String {
    let mut spelled = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '+' => spelled.push_str(" plus "),
            '#' => spelled.push_str(" sharp "),
            '&' => spelled.push_str(" and "),
            c => spelled.push(c),
        }
    }
    slugify(&spelled)
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters, so the result fits a path
/// segment or a query value (space as `%20`, which share intents of X, Mastodon and
/// Bluesky and every `Location` reader accept).
pub(crate) fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// One fixed first segment of the site's paths.
#[derive(Debug)]
pub(crate) struct Name {
    pub(crate) name: &'static str,
    /// The public page or file that answers at this name, if any: `nib build` exports it,
    /// and the sitemap lists it when `sitemap` is set.
    pub(crate) page: Option<&'static str>,
    pub(crate) sitemap: bool,
    /// A folder of public pages or files (`/posts/…`): a short link may point into it.
    pub(crate) folder: bool,
    /// Public: a short link may point at it (or, for a folder, into it).
    pub(crate) public: bool,
    /// `robots.txt` asks crawlers to keep out.
    pub(crate) disallow: bool,
    /// Kept from short links, but a standalone page (`pages/NAME.md`) may take it: a
    /// name a reader would take for the site's own, as `/about/`.
    pub(crate) for_pages: bool,
}

const fn name(name: &'static str) -> Name {
    Name {
        name,
        page: None,
        sitemap: false,
        folder: false,
        public: false,
        disallow: false,
        for_pages: false,
    }
}

const fn for_pages(n: &'static str) -> Name {
    Name {
        for_pages: true,
        ..name(n)
    }
}

const fn folder(n: &'static str, page: Option<&'static str>) -> Name {
    Name {
        page,
        sitemap: page.is_some(),
        folder: true,
        public: true,
        ..name(n)
    }
}

const fn file(n: &'static str, page: &'static str) -> Name {
    Name {
        page: Some(page),
        public: true,
        ..name(n)
    }
}

const fn private(n: &'static str) -> Name {
    Name {
        disallow: true,
        ..name(n)
    }
}

/// Every fixed first segment, the ones nib answers and the ones it keeps free. A short
/// link's custom slug never takes one of them (compared without regard to case, so
/// `/Admin` can never look like the admin page either).
pub(crate) const NAMES: &[Name] = &[
    folder("posts", None),
    folder("tags", Some("/tags/")),
    folder("page", None),
    folder("static", None),
    file("feed.xml", "/feed.xml"),
    file("rss.xml", "/rss.xml"),
    file("feed.json", "/feed.json"),
    file("sitemap.xml", "/sitemap.xml"),
    file("robots.txt", "/robots.txt"),
    private("admin"),
    private("api"),
    name("healthz"),
    name("favicon.ico"),
    // The owner's web app manifest (its share target opens the share page); not exported.
    name("manifest.webmanifest"),
    // Not routes today: names a reader would take for the site's own, names a later
    // version may use, and the files `nib build` writes at the top of an export
    // (Netlify / Cloudflare Pages).
    name("post"),
    name("tag"),
    name("feed"),
    name("rss"),
    name("atom"),
    name("sitemap"),
    name("login"),
    name("logout"),
    name("share"),
    name("assets"),
    name("well-known"),
    name(".well-known"),
    name("search"),
    for_pages("about"),
    name("new"),
    name("edit"),
    name("_redirects"),
    name("_headers"),
];

/// Whether `segment` is one of the site's own names, which no short link may take.
pub(crate) fn is_reserved(segment: &str) -> bool {
    NAMES.iter().any(|n| n.name.eq_ignore_ascii_case(segment))
}

/// Whether a standalone page may have `slug`, and so be served at `/SLUG/`: not a name of
/// the table, unless the table keeps it for pages (compared without regard to case).
pub(crate) fn page_may_take(slug: &str) -> bool {
    !slug.is_empty()
        && NAMES
            .iter()
            .all(|n| n.for_pages || !n.name.eq_ignore_ascii_case(slug))
}

/// The fixed public pages and files, the front page first: what `nib build` exports
/// besides the pages of posts, listings and tags.
pub(crate) fn fixed_pages() -> impl Iterator<Item = &'static str> {
    std::iter::once("/").chain(NAMES.iter().filter_map(|n| n.page))
}

/// The fixed pages the sitemap lists (HTML pages, not feeds), the front page first.
pub(crate) fn sitemap_pages() -> impl Iterator<Item = &'static str> {
    std::iter::once("/").chain(NAMES.iter().filter(|n| n.sitemap).filter_map(|n| n.page))
}

/// The folders `robots.txt` asks crawlers to keep out of, as `/name/`.
pub(crate) fn disallowed() -> impl Iterator<Item = &'static str> {
    NAMES.iter().filter(|n| n.disallow).map(|n| n.name)
}

/// Whether a path of this site's is a public page or file a short link may point to:
/// the front page, a public file, or anything in a public folder.
pub(crate) fn is_public(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    // A standalone page's path.
    if let Route::Page(_) = Route::parse(path) {
        return true;
    }
    NAMES.iter().filter(|n| n.public).any(|n| {
        let rest = &path[1.min(path.len())..];
        if n.folder {
            rest.strip_prefix(n.name)
                .is_some_and(|r| r.starts_with('/'))
        } else {
            rest == n.name
        }
    })
}

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Methods {
    /// GET and HEAD.
    Read,
    /// GET, HEAD and POST (a form and the page that shows it).
    ReadPost,
    /// GET, HEAD, PATCH and DELETE (one link on the API).
    ReadPatchDelete,
    /// POST only (a form that changes something).
    Post,
}

impl Methods {
    /// The `Allow` header of a 405.
    pub(crate) fn allow(self) -> &'static str {
        match self {
            Methods::Read => "GET, HEAD",
            Methods::ReadPost => "GET, HEAD, POST",
            Methods::ReadPatchDelete => "GET, HEAD, PATCH, DELETE",
            Methods::Post => "POST",
        }
    }

    pub(crate) fn accepts(self, m: &Method) -> bool {
        let read = matches!(m, Method::Get | Method::Head);
        match self {
            Methods::Read => read,
            Methods::ReadPost => read || *m == Method::Post,
            Methods::ReadPatchDelete => read || matches!(m, Method::Patch | Method::Delete),
            Methods::Post => *m == Method::Post,
        }
    }
}

/// The owner's pages under `/admin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner<'p> {
    /// `/admin/`: the links, the forms, the bookmarklets.
    Home,
    Login,
    Logout,
    /// Where the bookmarklets land (GET) and post (POST).
    Share,
    /// `POST /admin/links`.
    Create,
    /// `/admin/links/CODE/delete`: the question (GET) and the deletion (POST).
    Delete(&'p str),
    /// `/admin/links/CODE/edit`: the edit form (GET) and the change (POST).
    Edit(&'p str),
    /// Any other path under the forms' folders: no form, so a 405 for every method.
    NoForm,
}

/// A request's path, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'p> {
    /// `/` (page 1) and `/page/N/`.
    Home(u64),
    /// A path whose canonical form is another (`/posts/x` → `/posts/x/`, `/page/1/` → `/`):
    /// a 301 there.
    Moved(String),
    Post(&'p str),
    /// `/posts/SLUG/NAME` (or `/posts/SLUG/img/NAME`): a file of the post's bundle folder,
    /// by its path inside it.
    PostFile(&'p str, &'p str),
    Tags,
    /// `/tags/TAG/` (page 1) and `/tags/TAG/page/N/`.
    Tag(&'p str, u64),
    /// `/tags/TAG/feed.xml`: the tag's Atom feed.
    TagFeed(&'p str),
    Atom,
    Rss,
    JsonFeed,
    Sitemap,
    Robots,
    Healthz,
    /// A file of `static/`, by its path inside it (`/favicon.ico` is `favicon.ico`).
    File(&'p str),
    Owner(Owner<'p>),
    /// `/manifest.webmanifest`: the owner's web app, so a phone can share to nib.
    Manifest,
    /// `/api/links`: list (GET) and create (POST).
    ApiLinks,
    /// `/api/links/CODE`: one link (GET), its edit (PATCH) or its deletion (DELETE).
    ApiLink(&'p str),
    /// `/SLUG/`: a standalone page (`pages/SLUG.md`), for any one segment the table
    /// leaves to pages.
    Page(&'p str),
    /// `/CODE`: a short link's redirect (or, when no link has the code, a 301 to the
    /// page `/CODE/`).
    Short(&'p str),
    /// `/CODE+`: a short link's preview page.
    Preview(&'p str),
    NotFound,
}

impl<'p> Route<'p> {
    /// Parses a decoded path (it starts with `/`).
    pub(crate) fn parse(path: &'p str) -> Route<'p> {
        let segs: Vec<&str> = path[1.min(path.len())..].split('/').collect();
        let page = |n: &str| match n.parse::<u64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => None,
        };
        match segs.as_slice() {
            [""] => Route::Home(1),
            ["page", n, ""] => match page(n) {
                Some(1) => Route::Moved("/".into()),
                Some(n) => Route::Home(n),
                None => Route::NotFound,
            },
            ["posts", slug, ""] => Route::Post(slug),
            ["posts", slug] if !slug.is_empty() => {
                Route::Moved(format!("/posts/{}/", encode_component(slug)))
            }
            ["posts", slug, _, ..] if !slug.is_empty() => {
                Route::PostFile(slug, &path["/posts/".len() + slug.len() + 1..])
            }
            ["tags", ""] => Route::Tags,
            ["tags"] => Route::Moved("/tags/".into()),
            ["tags", tag, ""] => Route::Tag(tag, 1),
            ["tags", tag] if !tag.is_empty() => {
                Route::Moved(format!("/tags/{}/", encode_component(tag)))
            }
            ["tags", tag, "feed.xml"] if !tag.is_empty() => Route::TagFeed(tag),
            ["tags", tag, "page", n, ""] => match page(n) {
                Some(1) => Route::Moved(format!("/tags/{}/", encode_component(tag))),
                Some(n) => Route::Tag(tag, n),
                None => Route::NotFound,
            },
            ["feed.xml"] => Route::Atom,
            ["rss.xml"] => Route::Rss,
            ["feed.json"] => Route::JsonFeed,
            ["sitemap.xml"] => Route::Sitemap,
            ["robots.txt"] => Route::Robots,
            ["healthz"] => Route::Healthz,
            // `/static` alone names no file.
            ["static", ..] => match path.strip_prefix("/static/") {
                Some(rel) => Route::File(rel),
                None => Route::NotFound,
            },
            ["favicon.ico"] => Route::File("favicon.ico"),
            ["manifest.webmanifest"] => Route::Manifest,
            ["admin"] => Route::Moved("/admin/".into()),
            ["admin", ""] => Route::Owner(Owner::Home),
            ["admin", "login"] => Route::Owner(Owner::Login),
            ["admin", "logout"] => Route::Owner(Owner::Logout),
            ["admin", "share"] => Route::Owner(Owner::Share),
            ["admin", "links"] => Route::Owner(Owner::Create),
            ["admin", "links", code, "delete"] => Route::Owner(Owner::Delete(code)),
            ["admin", "links", code, "edit"] => Route::Owner(Owner::Edit(code)),
            ["admin", "logout" | "links", ..] => Route::Owner(Owner::NoForm),
            ["api", "links"] => Route::ApiLinks,
            ["api", "links", code] => Route::ApiLink(code),
            // Standalone pages: one segment and a slash, not one of the table's names.
            [slug, ""] if page_may_take(slug) => Route::Page(slug),
            // Short links: whatever single segment nothing above claimed.
            [code] if is_code_like(code) => Route::Short(code),
            [code] if code.strip_suffix('+').is_some_and(is_code_like) => {
                Route::Preview(&code[..code.len() - 1])
            }
            _ => Route::NotFound,
        }
    }

    /// The methods this route answers. The method is checked before the handler runs: a
    /// POST to a page must not render it (or, on the API, count a failed login) only to
    /// answer 405.
    pub(crate) fn methods(&self) -> Methods {
        match self {
            Route::Owner(Owner::Login | Owner::Share | Owner::Delete(_) | Owner::Edit(_))
            | Route::ApiLinks => Methods::ReadPost,
            Route::ApiLink(_) => Methods::ReadPatchDelete,
            Route::Owner(Owner::Logout | Owner::Create | Owner::NoForm) => Methods::Post,
            _ => Methods::Read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One path for every route but the short links' and the 404, and what it parses to.
    fn fixed_routes() -> Vec<(&'static str, Route<'static>)> {
        vec![
            ("/", Route::Home(1)),
            ("/page/3/", Route::Home(3)),
            ("/page/1/", Route::Moved("/".into())),
            ("/posts/hello/", Route::Post("hello")),
            ("/posts/hello", Route::Moved("/posts/hello/".into())),
            ("/posts/hello/pic.png", Route::PostFile("hello", "pic.png")),
            (
                "/posts/hello/img/a.png",
                Route::PostFile("hello", "img/a.png"),
            ),
            ("/posts/hello/img/", Route::PostFile("hello", "img/")),
            ("/posts//pic.png", Route::NotFound),
            ("/tags/", Route::Tags),
            ("/tags", Route::Moved("/tags/".into())),
            ("/tags/rust/", Route::Tag("rust", 1)),
            ("/tags/rust", Route::Moved("/tags/rust/".into())),
            ("/tags/rust/page/2/", Route::Tag("rust", 2)),
            ("/tags/rust/page/1/", Route::Moved("/tags/rust/".into())),
            ("/feed.xml", Route::Atom),
            ("/rss.xml", Route::Rss),
            ("/feed.json", Route::JsonFeed),
            ("/tags/rust/feed.xml", Route::TagFeed("rust")),
            ("/sitemap.xml", Route::Sitemap),
            ("/robots.txt", Route::Robots),
            ("/healthz", Route::Healthz),
            ("/static/style.css", Route::File("style.css")),
            ("/favicon.ico", Route::File("favicon.ico")),
            ("/manifest.webmanifest", Route::Manifest),
            ("/admin", Route::Moved("/admin/".into())),
            ("/admin/", Route::Owner(Owner::Home)),
            ("/admin/login", Route::Owner(Owner::Login)),
            ("/admin/logout", Route::Owner(Owner::Logout)),
            ("/admin/share", Route::Owner(Owner::Share)),
            ("/admin/links", Route::Owner(Owner::Create)),
            (
                "/admin/links/abc/delete",
                Route::Owner(Owner::Delete("abc")),
            ),
            ("/admin/links/abc/edit", Route::Owner(Owner::Edit("abc"))),
            ("/admin/links/abc", Route::Owner(Owner::NoForm)),
            ("/api/links", Route::ApiLinks),
            ("/api/links/abc", Route::ApiLink("abc")),
        ]
    }

    #[test]
    fn paths_parse_into_routes() {
        let mut cases = fixed_routes();
        cases.extend([
            ("/abc", Route::Short("abc")),
            ("/abc+", Route::Preview("abc")),
            ("/page/0/", Route::NotFound),
            ("/page/x/", Route::NotFound),
            ("/tags/rust/page/0/", Route::NotFound),
            ("/static", Route::NotFound),
            ("/admin/other", Route::NotFound),
            ("/api/other", Route::NotFound),
            ("/a/b", Route::NotFound),
            ("/posts/café", Route::Moved("/posts/caf%C3%A9/".into())),
            ("/about/", Route::Page("about")),
            ("/café/", Route::Page("café")),
            ("/about", Route::Short("about")),
            ("/Admin/", Route::NotFound),
            ("/feed.xml/", Route::NotFound),
            ("/a/b/", Route::NotFound),
        ]);
        for (path, want) in cases {
            assert_eq!(Route::parse(path), want, "{path}");
        }
    }

    #[test]
    fn every_fixed_path_is_reserved_for_short_link_slugs() {
        for (path, route) in fixed_routes() {
            let first = path[1..].split('/').next().unwrap_or("");
            assert!(
                first.is_empty() || is_reserved(first),
                "{path} ({route:?}) starts with {first:?}, which a short link could take"
            );
        }
        // And each reserved name is refused as a slug in every case.
        for n in NAMES {
            assert!(is_reserved(&n.name.to_uppercase()), "{}", n.name);
        }
    }

    #[test]
    fn methods_follow_the_routes() {
        let cases = [
            ("/", "GET, HEAD"),
            ("/admin/login", "GET, HEAD, POST"),
            ("/admin/share", "GET, HEAD, POST"),
            ("/api/links", "GET, HEAD, POST"),
            ("/api/links/abc", "GET, HEAD, PATCH, DELETE"),
            ("/admin/logout", "POST"),
            ("/admin/links", "POST"),
            ("/admin/links/abc/delete", "GET, HEAD, POST"),
            ("/admin/links/abc/edit", "GET, HEAD, POST"),
            ("/manifest.webmanifest", "GET, HEAD"),
            ("/admin/links/abc", "POST"),
            ("/abc", "GET, HEAD"),
        ];
        for (path, allow) in cases {
            assert_eq!(Route::parse(path).methods().allow(), allow, "{path}");
        }
        assert!(Methods::Read.accepts(&Method::Head));
        assert!(!Methods::Read.accepts(&Method::Post));
        assert!(!Methods::Post.accepts(&Method::Get));
        assert!(Methods::ReadPatchDelete.accepts(&Method::Delete));
        assert!(Methods::ReadPatchDelete.accepts(&Method::Patch));
        assert!(!Methods::ReadPost.accepts(&Method::Patch));
    }

    #[test]
    fn the_table_gives_the_exported_and_listed_pages() {
        let fixed: Vec<_> = fixed_pages().collect();
        assert_eq!(
            fixed,
            [
                "/",
                "/tags/",
                "/feed.xml",
                "/rss.xml",
                "/feed.json",
                "/sitemap.xml",
                "/robots.txt"
            ]
        );
        assert_eq!(sitemap_pages().collect::<Vec<_>>(), ["/", "/tags/"]);
        assert_eq!(disallowed().collect::<Vec<_>>(), ["admin", "api"]);
        // Every exported page parses to a route that answers it, not to a short link.
        for p in fixed_pages() {
            let r = Route::parse(p);
            assert!(
                !matches!(r, Route::Short(_) | Route::NotFound),
                "{p}: {r:?}"
            );
        }
    }

    #[test]
    fn public_paths_are_the_blogs() {
        let cases = [
            ("/", true),
            ("/posts/x/", true),
            ("/tags/", true),
            ("/page/2/", true),
            ("/static/a.png", true),
            ("/feed.xml", true),
            ("/robots.txt", true),
            ("/postsx", false),
            ("/posts", false),
            ("/abc", false),
            ("/admin/", false),
            ("/api/links", false),
            ("/healthz", false),
            ("/feed.xml/x", false),
            ("/about/", true),
            ("/admin/x/", false),
        ];
        for (path, want) in cases {
            assert_eq!(is_public(path), want, "{path}");
        }
    }

    /// Regression: a post tagged `C++` and `c` kept only `C++`, both slugs being `c`.
    #[test]
    fn tag_keys_fold_case_but_keep_cpp_apart_from_c() {
        let cases = [
            ("Rust", "rust"),
            ("rust", "rust"),
            ("C++", "c-plus-plus"),
            ("c", "c"),
            ("C#", "c-sharp"),
            ("F#", "f-sharp"),
            ("R&D", "r-and-d"),
            ("Node.js", "node-js"),
            ("Café", "café"),
            ("+", "plus"),
            ("--", ""),
        ];
        for (name, want) in cases {
            assert_eq!(tag_key(name), want, "{name}");
        }
    }
}
