//! Storing a short link: the next generated code, or a custom slug, for a checked target,
//! in one transaction; and editing one (target, title, code). The server's forms and API
//! and `nib shorten` all come here.

use crate::auth;
use crate::config::Config;
use crate::dates;
use crate::db::{Created, Db, LinkRow, Updated};
use crate::error::Error;
use crate::links::{self, Codes};

pub(crate) fn codes(db: &Db) -> Result<Codes, Error> {
    let key = db
        .meta_get("code_key")?
        .and_then(|k| auth::unhex(&k))
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| Error::Internal("code key missing".into()))?;
    Ok(Codes::new(key))
}

/// Validates and creates (or finds) a link: the one path used by the API, the admin form,
/// the share page and `nib shorten`.
pub(crate) fn create_link(
    db: &Db,
    cfg: &Config,
    url: &str,
    slug: Option<&str>,
    title: Option<&str>,
) -> Result<(LinkRow, bool), Error> {
    let url = links::normalize_target(url, cfg.base()).map_err(Error::BadRequest)?;
    let slug = slug.map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = slug {
        links::check_slug(s).map_err(Error::BadRequest)?;
    }
    let title = links::clean_title(title.unwrap_or(""));
    let codes = codes(db)?;
    let created = db.create_link(&url, slug, &title, dates::now(), &|n| codes.code(n), &|c| {
        !links::is_reserved(c)
    })?;
    match created {
        Created::New(l) => Ok((l, true)),
        Created::Existing(l) => Ok((l, false)),
        Created::SlugTaken => Err(Error::Conflict(format!(
            "slug {:?} is taken",
            slug.unwrap_or_default()
        ))),
    }
}

// ---- public: redirect and preview ----

/// Checks and applies an edit of the link `code`: each field that is given is changed
/// (a new slug under the same rules as a created one; the old code stays as an alias).
/// 404 for an unknown code, 400 for a refused field, 409 for a slug another link has.
pub(crate) fn edit_link(
    db: &Db,
    cfg: &Config,
    code: &str,
    url: Option<&str>,
    slug: Option<&str>,
    title: Option<&str>,
) -> Result<LinkRow, Error> {
    let url = url
        .map(|u| links::normalize_target(u, cfg.base()))
        .transpose()
        .map_err(Error::BadRequest)?;
    let slug = slug.map(str::trim);
    if let Some(s) = slug {
        links::check_slug(s).map_err(Error::BadRequest)?;
    }
    let title = title.map(links::clean_title);
    match db.update_link(code, url.as_deref(), title.as_deref(), slug)? {
        Updated::Done(l) => Ok(l),
        Updated::NotFound => Err(Error::NotFound),
        Updated::SlugTaken => Err(Error::Conflict(format!(
            "slug {:?} is taken",
            slug.unwrap_or_default()
        ))),
    }
}
