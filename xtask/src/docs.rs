//! `cargo xtask docs`: rustdoc with warnings denied, the mdBook guide, and the
//! link check. All three run even if one fails, so one pass shows every
//! problem.

use std::path::PathBuf;

use crate::error::{XtaskError, XtaskResult};
use crate::link_check;
use crate::process::{repository_root, Invocation};
use crate::toolchain::MDBOOK;

/// Where the mdBook guide lives, relative to the repository root.
const GUIDE_DIRECTORY: &str = "guide";

/// Builds the API docs, the guide (unless `build_guide` is false) and checks
/// the documentation's links.
pub fn docs(build_guide: bool) -> XtaskResult<()> {
    let root = repository_root();
    let mut failed_steps = Vec::new();

    if let Err(error) = rustdoc_invocation().run() {
        eprintln!("error: {error}");
        failed_steps.push("rustdoc".to_string());
    }

    if build_guide {
        if let Err(error) = build_mdbook_guide() {
            eprintln!("error: {error}");
            failed_steps.push("guide".to_string());
        }
    } else {
        println!("skipping the mdBook guide (--no-mdbook)");
    }

    println!("$ (link check of README.md, CONTRIBUTING.md, AGENTS.md, docs/, guide/src/)");
    if let Err(error) = link_check::run(&root) {
        eprintln!("error: {error}");
        failed_steps.push("link check".to_string());
    }

    if failed_steps.is_empty() {
        println!("docs: ok");
        Ok(())
    } else {
        Err(XtaskError::StepsFailed { failed_steps })
    }
}

/// `cargo doc --workspace --no-deps --all-features` with `-D warnings` added
/// to any `RUSTDOCFLAGS` the caller already set.
fn rustdoc_invocation() -> Invocation {
    let flags = match std::env::var("RUSTDOCFLAGS") {
        Ok(existing) if !existing.trim().is_empty() => format!("{existing} -D warnings"),
        _ => "-D warnings".to_string(),
    };
    Invocation::cargo(&["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", &flags)
}

fn build_mdbook_guide() -> XtaskResult<()> {
    let book_file = repository_root().join(GUIDE_DIRECTORY).join("book.toml");
    if !book_file.is_file() {
        return Err(XtaskError::Missing(format!(
            "{} not found: there is no mdBook guide to build yet (use --no-mdbook to skip it)",
            book_file.display()
        )));
    }
    MDBOOK.ensure_installed()?;
    // Build into the cargo target directory, so the rendered book never
    // lands in the source tree.
    let destination = target_directory().join("guide");
    let destination = destination.to_string_lossy();
    Invocation::new("mdbook")
        .args(&["build", GUIDE_DIRECTORY, "--dest-dir", &destination])
        .run()?;
    println!("guide: {destination}/index.html");
    Ok(())
}

/// `CARGO_TARGET_DIR` if set (relative to the repository root), else `target/`.
fn target_directory() -> PathBuf {
    let root = repository_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(directory) if !directory.is_empty() => root.join(PathBuf::from(directory)),
        _ => root.join("target"),
    }
}
