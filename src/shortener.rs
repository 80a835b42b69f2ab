//! Storing a short link: the next generated code, or a custom slug, for a checked target,
//! in one transaction. The server's forms and API and `nib shorten` all come here.

use crate::auth;
use crate::config::Config;
use crate::dates;
use crate::db::{Created, Db, LinkRow};
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
