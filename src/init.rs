//! `nib init DIR`: starts a new site, as `zola init` does. It writes a folder holding
//! `posts/` with one example post, a `nib.toml` naming every setting (all commented out,
//! so the defaults apply until the owner changes one) and an empty `static/`, then says
//! what to do next. The look comes built into the binary (see `handlers::files::EMBEDDED`),
//! so nothing else is needed for the site to look like the example site.

use std::fs;
use std::io;
use std::path::Path;

use crate::dates;
use crate::error::StartupError;

/// The example site's `nib.toml`: its comments are the documentation of every key, so a
/// new site gets the same text with the keys commented out.
const EXAMPLE_CONFIG: &str = include_str!("../nib.toml");

/// `nib.toml` for a new site: [`EXAMPLE_CONFIG`] with every setting commented out.
pub(crate) fn commented_config() -> String {
    let mut out = String::with_capacity(EXAMPLE_CONFIG.len() + 64);
    for line in EXAMPLE_CONFIG.lines() {
        if is_setting(line) {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether `line` sets a key (`title = "nib"`), as opposed to a comment or a blank line.
fn is_setting(line: &str) -> bool {
    line.split_once('=').is_some_and(|(key, _)| {
        let key = key.trim();
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

/// The example post, dated `day`: it shows the front matter nib reads and says where the
/// rest is documented.
fn example_post(day: &str) -> String {
    format!(
        "---\n\
         title: \"Hello from nib\"\n\
         date: {day}\n\
         tags: [meta]\n\
         description: \"The first post of this site.\"\n\
         ---\n\n\
         This site is served by nib. Every markdown file in `posts/` is a post: its front\n\
         matter (between the `---` lines) gives the title, date and tags, and the text below\n\
         it is the post.\n\n\
         <!-- more -->\n\n\
         Edit this file or add another one, and reload the page: nib notices the change on\n\
         its own. `nib new \"A title\"` starts a draft for you; set `draft: false` when it is\n\
         ready.\n"
    )
}

/// Creates the site in `dir` and prints the next steps. An existing folder is used only
/// when it is empty, so `init` never overwrites anyone's files.
pub(crate) fn init(dir: &Path) -> Result<u8, StartupError> {
    let err = |path: &Path, e: io::Error| StartupError::Other(format!("{}: {e}", path.display()));
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(StartupError::Other(format!(
                    "{}: the folder is not empty; give a new or empty folder",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        }
        Err(e) => return Err(err(dir, e)),
    }
    let day = dates::ymd(dates::now());
    let posts = dir.join("posts");
    let statics = dir.join("static");
    for folder in [&posts, &statics] {
        fs::create_dir(folder).map_err(|e| err(folder, e))?;
    }
    let post = posts.join(format!("{day}-hello.md"));
    fs::write(&post, example_post(&day)).map_err(|e| err(&post, e))?;
    let config = dir.join("nib.toml");
    fs::write(&config, commented_config()).map_err(|e| err(&config, e))?;
    println!(
        "nib: created a site in {dir}\n\n\
         next:\n  \
         cd {dir}\n  \
         nib                  serve it at http://127.0.0.1:8080/ (the admin token is printed once)\n  \
         nib new \"A title\"    start a post in posts/\n  \
         edit nib.toml        name the site and set base_url before putting it online\n\n\
         Files in static/ replace the built-in ones of the same name (style.css, favicon.ico).",
        dir = dir.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Args, Config};
    use std::collections::HashMap;

    fn load(root: &Path) -> Result<Config, StartupError> {
        let args = Args {
            root: Some(root.to_path_buf()),
            ..Args::default()
        };
        Config::load(&args, &HashMap::new())
    }

    #[test]
    fn a_new_site_has_a_post_a_commented_config_and_static() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("blog");
        assert_eq!(init(&site).unwrap(), 0);
        assert!(site.join("static").is_dir());
        let posts: Vec<_> = fs::read_dir(site.join("posts")).unwrap().collect();
        assert_eq!(posts.len(), 1);
        // With every key commented out, the defaults apply and the config loads.
        let text = fs::read_to_string(site.join("nib.toml")).unwrap();
        assert!(text.lines().all(|l| !is_setting(l)), "{text}");
        let cfg = load(&site).unwrap();
        let post = posts[0].as_ref().unwrap().path();
        let text = fs::read_to_string(&post).unwrap();
        let name = post.file_name().unwrap().to_str().unwrap();
        assert!(crate::posts::parse(name, &text, 0).is_ok(), "{text}");
        assert!(cfg.posts_dir.ends_with("posts"));
        // A second init into the same folder refuses instead of overwriting.
        let again = init(&site).unwrap_err().to_string();
        assert!(again.contains("not empty"), "{again}");
    }

    #[test]
    fn every_setting_is_named_in_the_new_config_and_each_example_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        // serde names every known key when it meets an unknown one.
        fs::write(dir.path().join("nib.toml"), "zz_no_such_key = 1").unwrap();
        let msg = load(dir.path()).unwrap_err().to_string();
        let (_, known) = msg.split_once("expected one of").expect(&msg);
        let keys: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
        assert!(keys.len() > 5, "{msg}");
        let config = commented_config();
        let lines: Vec<&str> = config
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .collect();
        for key in keys {
            // A plain key's example is its line; a table's (`[[nav]]`) runs from its
            // header to the next blank or prose line.
            let table = format!("[[{key}]]");
            let example = if let Some(at) = lines.iter().position(|l| *l == table) {
                let rest = lines[at + 1..].iter().take_while(|l| is_setting(l));
                std::iter::once(&lines[at])
                    .chain(rest)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                let line = lines
                    .iter()
                    .find(|l| is_setting(l) && l.split('=').next().unwrap().trim() == key);
                line.unwrap_or_else(|| panic!("nib.toml shows no example of {key}"))
                    .to_string()
            };
            // Each example, uncommented on its own, is a valid setting.
            fs::write(dir.path().join("nib.toml"), &example).unwrap();
            if let Err(e) = load(dir.path()) {
                panic!("the example {example:?} does not load: {e}");
            }
        }
    }
}
