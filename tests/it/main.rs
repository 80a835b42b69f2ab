//! Every integration test, as one test binary: each module starts the real `nib` binary
//! through the harness in [`common`] and talks to it over a socket (or runs its commands).
//! One binary links the harness once and lets the compiler see which of its helpers no
//! test uses. Tests that need a tool (nginx, Caddy, Chromium, Java) skip with a message
//! when it is missing, unless `NIB_REQUIRE_TOOLS=1` asks them to fail (see
//! [`common::need_tool`]).

mod common;

mod blog;
mod bundles;
mod e2e_bookmarklet;
mod e2e_public;
mod export;
mod html_valid;
mod lifecycle;
mod links;
mod migrate;
mod pages;
mod shortcodes;
mod static_files;
