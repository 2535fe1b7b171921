//! The documentation link check: every relative link in the project's
//! Markdown must point to a file or directory that exists.
//!
//! Checked files: `README.md`, `CONTRIBUTING.md`, `AGENTS.md`, `docs/**/*.md`
//! and `guide/src/**/*.md`. Links with a URL scheme (`https:`, `mailto:`, ...)
//! are not fetched; pure anchors (`#section`) and the anchor part of a file
//! link are ignored. Links inside fenced code blocks and inline code spans are
//! not links and are skipped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{XtaskError, XtaskResult};

/// Top-level Markdown files that are checked when they exist.
const TOP_LEVEL_FILES: [&str; 3] = ["README.md", "CONTRIBUTING.md", "AGENTS.md"];
/// Directories whose Markdown files are checked recursively when they exist.
const CHECKED_DIRECTORIES: [&str; 2] = ["docs", "guide/src"];
/// Bound on directory nesting, so a symlink loop cannot recurse forever.
const DIRECTORY_DEPTH_MAX: usize = 32;

/// A link target found in a Markdown file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// 1-based line number of the link.
    pub line: usize,
    /// The link destination as written (without angle brackets).
    pub target: String,
}

/// A relative link whose target does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The Markdown file, relative to the repository root.
    pub file: PathBuf,
    /// 1-based line number of the link.
    pub line: usize,
    /// The link destination as written.
    pub target: String,
    /// Why it is broken.
    pub reason: String,
}

/// Runs the link check over the project's documentation and prints the
/// result; fails with [`XtaskError::BrokenLinks`] if anything is broken.
pub fn run(root: &Path) -> XtaskResult<()> {
    let files = documentation_files(root)?;
    let mut link_count = 0;
    let mut broken_links = Vec::new();
    for file in &files {
        let (checked, broken) = check_file(root, file)?;
        link_count += checked;
        broken_links.extend(broken);
    }
    for broken in &broken_links {
        eprintln!(
            "{}:{}: broken link `{}`: {}",
            broken.file.display(),
            broken.line,
            broken.target,
            broken.reason
        );
    }
    println!(
        "link check: {link_count} relative link(s) in {} file(s), {} broken",
        files.len(),
        broken_links.len()
    );
    if broken_links.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::BrokenLinks {
            count: broken_links.len(),
        })
    }
}

/// The Markdown files the link check covers, relative to `root`, sorted.
pub fn documentation_files(root: &Path) -> XtaskResult<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = TOP_LEVEL_FILES
        .iter()
        .map(PathBuf::from)
        .filter(|file| root.join(file).is_file())
        .collect();
    for directory in CHECKED_DIRECTORIES {
        let mut found = Vec::new();
        collect_markdown(root, Path::new(directory), 0, &mut found)?;
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn collect_markdown(
    root: &Path,
    relative_directory: &Path,
    depth: usize,
    found: &mut Vec<PathBuf>,
) -> XtaskResult<()> {
    let directory = root.join(relative_directory);
    if !directory.is_dir() || depth > DIRECTORY_DEPTH_MAX {
        return Ok(());
    }
    let entries = fs::read_dir(&directory)
        .map_err(|source| XtaskError::io("reading directory", &directory, source))?;
    for entry in entries {
        let entry =
            entry.map_err(|source| XtaskError::io("reading directory", &directory, source))?;
        let relative = relative_directory.join(entry.file_name());
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(root, &relative, depth + 1, found)?;
        } else if path.extension().is_some_and(|extension| extension == "md") {
            found.push(relative);
        }
    }
    Ok(())
}

/// Checks one file (relative to `root`); returns how many relative links it
/// checked and the broken ones.
pub fn check_file(root: &Path, file: &Path) -> XtaskResult<(usize, Vec<BrokenLink>)> {
    let path = root.join(file);
    let text =
        fs::read_to_string(&path).map_err(|source| XtaskError::io("reading", &path, source))?;
    let base_directory = path.parent().unwrap_or(root).to_path_buf();
    let mut checked = 0;
    let mut broken = Vec::new();
    for link in extract_links(&text) {
        let Some(local) = local_target(&link.target) else {
            continue;
        };
        checked += 1;
        let reason = match local {
            LocalTarget::Empty => Some("empty link target".to_string()),
            LocalTarget::Path(relative) => {
                let resolved = match relative.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => base_directory.join(&relative),
                };
                if resolved.exists() {
                    None
                } else {
                    Some(format!("no such file {}", resolved.display()))
                }
            }
        };
        if let Some(reason) = reason {
            broken.push(BrokenLink {
                file: file.to_path_buf(),
                line: link.line,
                target: link.target,
                reason,
            });
        }
    }
    Ok((checked, broken))
}

/// What a link destination refers to on disk, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalTarget {
    /// `[text]()`: a link to nothing.
    Empty,
    /// A path, percent-decoded, without its `#anchor` or `?query`.
    Path(String),
}

/// Classifies a destination: `None` for URLs with a scheme and for pure
/// anchors, otherwise the local path to check.
pub fn local_target(target: &str) -> Option<LocalTarget> {
    let target = target.trim();
    if target.is_empty() {
        return Some(LocalTarget::Empty);
    }
    if target.starts_with('#') || has_url_scheme(target) {
        return None;
    }
    let end = target.find(['#', '?']).unwrap_or(target.len());
    Some(LocalTarget::Path(percent_decode(&target[..end])))
}

/// `scheme:` per RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn has_url_scheme(target: &str) -> bool {
    let Some(colon) = target.find(':') else {
        return false;
    };
    let scheme = &target[..colon];
    let mut characters = scheme.chars();
    match characters.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            characters.all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        _ => false,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            let high = (bytes[index + 1] as char).to_digit(16);
            let low = (bytes[index + 2] as char).to_digit(16);
            if let (Some(high), Some(low)) = (high, low) {
                // Two hex digits are at most 0xFF, so this cannot truncate.
                decoded.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Every link destination in a Markdown document: inline links and images
/// `[text](dest)`, reference definitions `[label]: dest`, and HTML
/// `href="dest"` / `src="dest"`; not inside fenced code or code spans.
pub fn extract_links(markdown: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut open_fence: Option<(char, usize)> = None;
    for (index, raw_line) in markdown.lines().enumerate() {
        let line_number = index + 1;
        let trimmed = raw_line.trim_start();
        if let Some((fence_character, fence_length)) = fence_marker(trimmed) {
            match open_fence {
                None => {
                    open_fence = Some((fence_character, fence_length));
                    continue;
                }
                Some((open_character, open_length))
                    if open_character == fence_character
                        && fence_length >= open_length
                        && trimmed[fence_length..].trim().is_empty() =>
                {
                    open_fence = None;
                    continue;
                }
                Some(_) => {}
            }
        }
        if open_fence.is_some() {
            continue;
        }
        let line = mask_code_spans(raw_line);
        if let Some(target) = reference_definition(&line) {
            links.push(Link {
                line: line_number,
                target,
            });
            continue;
        }
        for target in inline_destinations(&line) {
            links.push(Link {
                line: line_number,
                target,
            });
        }
        for target in html_destinations(&line) {
            links.push(Link {
                line: line_number,
                target,
            });
        }
    }
    links
}

/// A code fence (three or more backticks or tildes): its character and length.
fn fence_marker(trimmed_line: &str) -> Option<(char, usize)> {
    let first = trimmed_line.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let length = trimmed_line.chars().take_while(|&c| c == first).count();
    (length >= 3).then_some((first, length))
}

/// Replaces the contents of inline code spans with spaces, so that code such
/// as `` `[a](b)` `` is not mistaken for a link. Byte offsets are preserved.
fn mask_code_spans(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut masked = bytes.to_vec();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'`' {
            index += 1;
            continue;
        }
        let run_start = index;
        while index < bytes.len() && bytes[index] == b'`' {
            index += 1;
        }
        let run_length = index - run_start;
        // Find a closing run of exactly the same length.
        let mut search = index;
        let mut closing = None;
        while search < bytes.len() {
            if bytes[search] == b'`' {
                let close_start = search;
                while search < bytes.len() && bytes[search] == b'`' {
                    search += 1;
                }
                if search - close_start == run_length {
                    closing = Some(close_start);
                    break;
                }
            } else {
                search += 1;
            }
        }
        if let Some(close_start) = closing {
            for byte in &mut masked[index..close_start] {
                *byte = b' ';
            }
            index = close_start + run_length;
        }
    }
    // Span boundaries are ASCII backticks and every byte inside a span became
    // an ASCII space, so the result is still UTF-8; the lossy path is a guard.
    match String::from_utf8(masked) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

/// `[label]: destination` at the start of a line (up to three spaces indent).
fn reference_definition(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = line[indent..].strip_prefix('[')?;
    let label_end = rest.find("]:")?;
    if label_end == 0 || rest[..label_end].contains('[') || rest[..label_end].starts_with('^') {
        return None;
    }
    let destination = rest[label_end + 2..].trim_start();
    parse_destination(destination)
}

/// Destinations of `](dest)`, i.e. inline links and images.
fn inline_destinations(line: &str) -> Vec<String> {
    let mut destinations = Vec::new();
    let mut rest = line;
    while let Some(position) = rest.find("](") {
        let after = &rest[position + 2..];
        if let Some(destination) = parse_destination(after.trim_start()) {
            destinations.push(destination);
        }
        rest = after;
    }
    destinations
}

/// Parses a link destination at the start of `text`: `<...>` or a run of
/// non-space characters with balanced parentheses.
fn parse_destination(text: &str) -> Option<String> {
    if let Some(bracketed) = text.strip_prefix('<') {
        let end = bracketed.find('>')?;
        return Some(bracketed[..end].to_string());
    }
    let mut depth = 0usize;
    let mut end = text.len();
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match character {
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' if depth == 0 => {
                end = index;
                break;
            }
            ')' => depth -= 1,
            c if c.is_whitespace() => {
                end = index;
                break;
            }
            _ => {}
        }
    }
    Some(text[..end].to_string())
}

/// Destinations of HTML `href="..."` and `src="..."` attributes.
fn html_destinations(line: &str) -> Vec<String> {
    let mut destinations = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        let mut rest = line;
        while let Some(position) = rest.find(attribute) {
            let after = &rest[position + attribute.len()..];
            if let Some(end) = after.find('"') {
                destinations.push(after[..end].to_string());
            }
            rest = after;
        }
    }
    destinations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(markdown: &str) -> Vec<String> {
        extract_links(markdown)
            .into_iter()
            .map(|link| link.target)
            .collect()
    }

    #[test]
    fn finds_inline_links_images_and_reference_definitions() {
        let markdown = "See [the guide](guide/src/SUMMARY.md) and ![logo](img/logo.png).\n\
                        [spec]: docs/spec/SPEC.md \"title\"\n\
                        <a href=\"LICENSE-MIT\">MIT</a>\n";
        assert_eq!(
            targets(markdown),
            vec![
                "guide/src/SUMMARY.md",
                "img/logo.png",
                "docs/spec/SPEC.md",
                "LICENSE-MIT"
            ]
        );
    }

    #[test]
    fn reports_line_numbers_from_one() {
        let links = extract_links("first\n\n[x](a.md)\n");
        assert_eq!(
            links,
            vec![Link {
                line: 3,
                target: "a.md".to_string()
            }]
        );
    }

    #[test]
    fn ignores_links_in_fenced_code_and_code_spans() {
        let markdown = "```rust\nlet x = [a](b);\n```\n\
                        ~~~~\n[no](no.md)\n~~~~\n\
                        Use `[x](not-a-link.md)` literally, but [yes](yes.md).\n";
        assert_eq!(targets(markdown), vec!["yes.md"]);
    }

    #[test]
    fn a_shorter_fence_does_not_close_a_longer_one() {
        let markdown = "````\n```\n[no](no.md)\n```\n````\n[yes](yes.md)\n";
        assert_eq!(targets(markdown), vec!["yes.md"]);
    }

    #[test]
    fn balanced_parentheses_and_titles_in_destinations() {
        assert_eq!(
            targets("[w](docs/a_(b).md) [t](c.md \"Title\") [<s>](<d e.md>)"),
            vec!["docs/a_(b).md", "c.md", "d e.md"]
        );
    }

    #[test]
    fn classifies_external_anchor_and_local_targets() {
        assert_eq!(local_target("https://example.com/x.md"), None);
        assert_eq!(local_target("mailto:someone@example.com"), None);
        assert_eq!(local_target("#start-in-5-minutes"), None);
        assert_eq!(
            local_target("docs/reference/TUNING.md#sync-mode"),
            Some(LocalTarget::Path("docs/reference/TUNING.md".to_string()))
        );
        assert_eq!(
            local_target("my%20file.md?plain=1"),
            Some(LocalTarget::Path("my file.md".to_string()))
        );
        assert_eq!(local_target(""), Some(LocalTarget::Empty));
        assert_eq!(
            local_target("caf%C3%A9%zz%é%"),
            Some(LocalTarget::Path("café%zz%é%".to_string()))
        );
    }

    #[test]
    fn check_file_reports_missing_targets_with_file_and_line() {
        let directory = std::env::temp_dir().join(format!(
            "xtask-link-check-{}-{}",
            std::process::id(),
            line!()
        ));
        fs::create_dir_all(directory.join("docs")).expect("create scratch directory");
        fs::write(directory.join("docs/present.md"), "# present\n").expect("write");
        fs::write(
            directory.join("README.md"),
            "[ok](docs/present.md)\n[ok too](/docs/present.md#top)\n\n[bad](docs/absent.md)\n[web](https://example.com)\n",
        )
        .expect("write");
        let result = check_file(&directory, Path::new("README.md"));
        fs::remove_dir_all(&directory).expect("remove scratch directory");
        let (checked, broken) = result.expect("check runs");
        assert_eq!(checked, 3);
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].line, 4);
        assert_eq!(broken[0].target, "docs/absent.md");
        assert_eq!(broken[0].file, PathBuf::from("README.md"));
    }

    #[test]
    fn relative_links_resolve_against_the_linking_file() {
        let directory = std::env::temp_dir().join(format!(
            "xtask-link-check-{}-{}",
            std::process::id(),
            line!()
        ));
        fs::create_dir_all(directory.join("guide/src/ops")).expect("create scratch directory");
        fs::write(directory.join("guide/src/intro.md"), "# intro\n").expect("write");
        fs::write(
            directory.join("guide/src/ops/compaction.md"),
            "[intro](../intro.md)\n[wrong](intro.md)\n",
        )
        .expect("write");
        let files = documentation_files(&directory);
        let result = check_file(&directory, Path::new("guide/src/ops/compaction.md"));
        fs::remove_dir_all(&directory).expect("remove scratch directory");
        assert_eq!(
            files.expect("listing works"),
            vec![
                PathBuf::from("guide/src/intro.md"),
                PathBuf::from("guide/src/ops/compaction.md")
            ]
        );
        let (_, broken) = result.expect("check runs");
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].line, 2);
    }
}
