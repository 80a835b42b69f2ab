//! The owner's secrets in the database: the code key, the cookie secret and the admin
//! token's hash. The server sets them up (and takes a token from the configuration); the
//! commands only create what is missing and never replace a token (`nib token --reset`
//! alone does).

use crate::auth;
use crate::config::Config;
use crate::db::Db;
use crate::error::Cause;

/// Prints a newly generated admin token, the one time it is ever shown (only its hash is
/// kept), with where to log in.
pub(crate) fn announce_token(token: &str, base: &str) {
    eprintln!("nib: admin token (shown only now): {token}\nnib: log in at {base}/admin/login");
}

/// The server's set-up of the secrets: [`ensure_secrets`], then the admin token follows
/// the configuration. Returns a token that was generated now (to be shown once), if any. A
/// token from the configuration replaces the stored hash when it differs, and a change of
/// token rotates the cookie secret so logins made with the old one end. Only `nib serve`
/// calls this: it is the process whose configuration the token belongs to.
pub(crate) fn setup_secrets(db: &Db, cfg: &Config) -> Result<Option<String>, Cause> {
    if let Some(fresh) = ensure_secrets(db, cfg)? {
        return Ok(Some(fresh));
    }
    let stored = db.meta_get("admin_token_sha256")?;
    let source = db.meta_get("admin_token_source")?;
    match &cfg.admin_token {
        Some(t) => {
            let h = auth::hash_token(t);
            if stored.as_deref() != Some(h.as_str()) {
                db.meta_set("admin_token_sha256", &h)?;
                db.meta_set("admin_token_source", "config")?;
                rotate_cookie_secret(db)?;
            }
            Ok(None)
        }
        // A token that came from the server's configuration and is gone from it must not
        // keep working unseen: a new one is generated and shown, as on first start.
        None if source.as_deref() == Some("config") => reset_token(db).map(Some),
        None => Ok(None),
    }
}

/// Makes sure the secrets exist (the code key, the cookie secret, some admin token) and
/// changes none that does. A token is made only when none is stored at all: the
/// configured one if there is one, else a generated one, returned to be shown once.
///
/// The commands (`nib shorten`, `nib links`, `nib token`) call this, never
/// [`setup_secrets`]: they often run with another environment than the server (a shell
/// without `NIB_ADMIN_TOKEN`), and letting them bring the token in line with theirs
/// replaced the server's token and logged the owner out (regression).
pub(crate) fn ensure_secrets(db: &Db, cfg: &Config) -> Result<Option<String>, Cause> {
    if db.meta_get("code_key")?.is_none() {
        db.meta_set("code_key", &auth::hex(&auth::random_bytes::<32>()?))?;
    }
    if db.meta_get("cookie_secret")?.is_none() {
        rotate_cookie_secret(db)?;
    }
    if db.meta_get("admin_token_sha256")?.is_some() {
        return Ok(None);
    }
    match &cfg.admin_token {
        Some(t) => {
            db.meta_set("admin_token_sha256", &auth::hash_token(t))?;
            db.meta_set("admin_token_source", "config")?;
            Ok(None)
        }
        None => reset_token(db).map(Some),
    }
}

/// Generates and stores a new admin token and ends every browser login.
pub(crate) fn reset_token(db: &Db) -> Result<String, Cause> {
    let token = auth::new_token()?;
    db.meta_set("admin_token_sha256", &auth::hash_token(&token))?;
    db.meta_set("admin_token_source", "generated")?;
    rotate_cookie_secret(db)?;
    Ok(token)
}

/// A new cookie secret, and no logins on record: every browser login ends.
pub(crate) fn rotate_cookie_secret(db: &Db) -> Result<(), Cause> {
    db.meta_set("cookie_secret", &auth::hex(&auth::random_bytes::<32>()?))?;
    Ok(db.end_all_logins()?)
}
