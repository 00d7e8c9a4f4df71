//! The documents the code cites exist (issue 9): every `docs/*` file named in
//! the sources, every heading quoted after a `docs/*.md` citation and
//! every link between the documents in `docs/` must resolve, and no comment
//! may cite the notes outside this repository that `docs/` replaced.
//!
//! The citation form is described in docs/README.md: the file, a comma and
//! the quoted heading, several headings joined by `,` or `and`, the heading
//! text allowed to wrap over comment lines. This file checks text only; it runs
//! no binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories (relative to the repository) whose files are scanned for
/// citations, recursively.
const SCANNED_DIRS: &[&str] = &["src", "init", "tests", "scripts", "templates", ".ci", "packaging"];

/// Single files scanned for citations.
const SCANNED_FILES: &[&str] = &["build.rs", "Cargo.toml", "README.md", "CHANGELOG.md"];

/// The documents in `docs/`: file name -> its headings (empty for
/// non-Markdown files such as the JSON schema).
type Docs = BTreeMap<String, Vec<String>>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_docs(dir: &Path) -> Docs {
    let mut docs = Docs::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let heads =
            if name.ends_with(".md") { headings(&fs::read_to_string(&path).unwrap()) } else { vec![] };
        docs.insert(name, heads);
    }
    docs
}

/// The ATX headings of a Markdown text, outside code fences.
fn headings(md: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            let text = line.trim_start_matches('#');
            if text.starts_with(' ') {
                out.push(text.trim().to_owned());
            }
        }
    }
    out
}

/// The anchor GitHub gives a heading: lower case, punctuation other than
/// `-` and `_` removed, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Skip whitespace and comment markers (`//`, `///`, `//!`, `#` at a line
/// start) from `i`; returns the new index.
fn skip_filler(b: &[u8], mut i: usize) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"//") {
            i += 2;
            if i < b.len() && (b[i] == b'!' || b[i] == b'/') {
                i += 1;
            }
        } else if i < b.len()
            && b[i] == b'#'
            && (i == 0 || b[..i].iter().rev().take_while(|c| **c != b'\n').all(|c| c.is_ascii_whitespace()))
        {
            i += 1;
        } else {
            return i;
        }
    }
}

/// A quoted heading starting at the `"` at `i`: its text with line breaks
/// and comment markers folded into single spaces, and the index after the
/// closing quote. `None` when the quote is not closed within 200 bytes.
fn quoted(b: &[u8], i: usize) -> Option<(String, usize)> {
    let mut text = Vec::new();
    let mut j = i + 1;
    while j < b.len() && j < i + 200 {
        match b[j] {
            b'"' => return Some((String::from_utf8_lossy(&text).into_owned(), j + 1)),
            b'\n' => {
                j = skip_filler(b, j);
                text.push(b' ');
            }
            c => {
                text.push(c);
                j += 1;
            }
        }
    }
    None
}

/// Problems with the `docs/` citations in one source text.
fn citation_problems(label: &str, text: &str, docs: &Docs) -> Vec<String> {
    let b = text.as_bytes();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut problems = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("docs/") {
        let start = from + found;
        from = start + 5;
        // `/usr/share/docs/x` is a path, not a citation.
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b"/._-".contains(&b[start - 1])) {
            continue;
        }
        let name_len =
            b[from..].iter().take_while(|c| c.is_ascii_alphanumeric() || b"._-".contains(c)).count();
        let name = text[from..from + name_len].trim_end_matches('.');
        if !(name.ends_with(".md") || name.ends_with(".json")) {
            continue;
        }
        let at = format!("{label}:{}", line_of(start));
        let Some(heads) = docs.get(name) else {
            problems.push(format!("{at}: cites docs/{name}, which does not exist"));
            continue;
        };
        let mut i = from + name.len();
        if b.get(i) == Some(&b'#') {
            let anchor_len =
                b[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || b"_-".contains(c)).count();
            let anchor = &text[i + 1..i + 1 + anchor_len];
            if !heads.iter().any(|h| slug(h) == anchor) {
                problems.push(format!("{at}: docs/{name} has no heading with anchor #{anchor}"));
            }
            continue;
        }
        if !name.ends_with(".md") {
            continue;
        }
        // Quoted headings, each after a `,` or `and`.
        loop {
            let j = skip_filler(b, i);
            let after_sep = if b.get(j) == Some(&b',') {
                j + 1
            } else if b[j..].starts_with(b"and ") {
                j + 3
            } else {
                break;
            };
            let k = skip_filler(b, after_sep);
            if b.get(k) != Some(&b'"') {
                break;
            }
            let Some((heading, end)) = quoted(b, k) else {
                problems.push(format!("{at}: unterminated heading after docs/{name}"));
                break;
            };
            if !heads.contains(&heading) {
                problems.push(format!("{at}: docs/{name} has no heading \"{heading}\""));
            }
            i = end;
        }
    }
    problems
}

/// Citations of the notes `docs/` replaced: the appliance reference's
/// sections and traps, and the machine notes. Spelled in pieces so this
/// file does not match itself.
fn old_citation_problems(label: &str, text: &str) -> Vec<String> {
    let section = '\u{a7}';
    let banned = [
        format!("reference {section}"),
        ["reference", "trap"].join(" "),
        ["machine", "facts"].join("-"),
        ["shared", "notes"].join(" "),
        ["appliance", "behaviour"].join("-"),
        ["", "work", "shared"].join("/"),
    ];
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let before = problems.len();
        for b in &banned {
            if line.contains(b.as_str()) {
                problems.push(format!("{label}:{}: cites \"{b}\", which is not in this repository", n + 1));
            }
        }
        // A bare section sign is a citation of the old reference unless it
        // follows an RFC number ("RFC 1952 §2.2").
        if let Some(p) = line.find(section).filter(|_| problems.len() == before) {
            if !line[..p].contains("RFC ") {
                problems.push(format!(
                    "{label}:{}: section citation without a document: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
        if let Some(p) = line.find("trap ") {
            if line[p + 5..].starts_with(|c: char| c.is_ascii_digit()) {
                problems.push(format!("{label}:{}: numbered trap; cite docs/traps.md by heading", n + 1));
            }
        }
    }
    problems
}

/// Problems with the links of one document in `docs/` (`[x](NAME.md#a)`,
/// `[x](#a)`); web links are not followed.
fn link_problems(name: &str, text: &str, docs: &Docs) -> Vec<String> {
    let mut problems = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("](") {
        let start = from + found + 2;
        let Some(len) = text[start..].find(')') else { break };
        from = start + len;
        let target = &text[start..start + len];
        if target.contains("://") {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = if file.is_empty() { name } else { file };
        let line = text[..start].matches('\n').count() + 1;
        match docs.get(file) {
            None => problems.push(format!("docs/{name}:{line}: links to {file}, which is not in docs/")),
            Some(heads) if !anchor.is_empty() && !heads.iter().any(|h| slug(h) == anchor) => {
                problems.push(format!("docs/{name}:{line}: {file} has no heading with anchor #{anchor}"))
            }
            Some(_) => {}
        }
    }
    problems
}

fn scanned(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() && entry.file_name() != "target" {
                walk(&path, out);
            } else if ty.is_file() {
                out.push(path);
            }
        }
    }
    let mut out: Vec<PathBuf> = SCANNED_FILES.iter().map(|f| root.join(f)).collect();
    for d in SCANNED_DIRS {
        walk(&root.join(d), &mut out);
    }
    out.sort();
    out
}

#[test]
fn issue9_doc_citations_resolve() {
    let root = repo();
    let docs = load_docs(&root.join("docs"));
    let mut problems = Vec::new();
    let mut cited = 0;
    for path in scanned(&root) {
        // Binary fixtures are not text and cite nothing.
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let label = path.strip_prefix(&root).unwrap().display().to_string();
        cited += text.matches("docs/").count();
        problems.extend(citation_problems(&label, &text, &docs));
        problems.extend(old_citation_problems(&label, &text));
    }
    for (name, heads) in &docs {
        if !name.ends_with(".md") {
            continue;
        }
        let text = fs::read_to_string(root.join("docs").join(name)).unwrap();
        problems.extend(link_problems(name, &text, &docs));
        let mut seen = std::collections::BTreeSet::new();
        for h in heads {
            if !seen.insert(slug(h)) {
                problems.push(format!("docs/{name}: heading \"{h}\" twice; anchors must be unique"));
            }
        }
    }
    assert!(
        cited > 0,
        "no docs/ citation found under {}: is the scan looking in the right place?",
        root.display()
    );
    assert!(problems.is_empty(), "{} broken or outdated citations:\n{}", problems.len(), problems.join("\n"));
}

/// The checker itself catches what it is for: a missing heading (also when
/// wrapped over comment lines), a missing file, a broken anchor and the old
/// citation forms; and it accepts good citations.
#[test]
fn issue9_doc_checker_catches_broken_citations() {
    let docs: Docs = [
        ("a.md".to_owned(), vec!["Kernel choice".to_owned(), "The if-newer rule".to_owned()]),
        ("schema.json".to_owned(), vec![]),
    ]
    .into();
    let d = "docs";
    let good = format!(
        "//! ({d}/a.md, \"Kernel\n//! choice\" and \"The if-newer rule\"), {d}/a.md#kernel-choice, \
         {d}/schema.json, /usr/share/{d}/x.md\n"
    );
    assert_eq!(citation_problems("good.rs", &good, &docs), Vec::<String>::new());

    let bad = format!("/// ({d}/a.md, \"Kernel\n/// Choice\")\n// {d}/b.md\n# ({d}/a.md#nope)\n");
    let found = citation_problems("bad.rs", &bad, &docs);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].contains("bad.rs:1") && found[0].contains("\"Kernel Choice\""), "{found:#?}");
    assert!(found[1].contains("bad.rs:3") && found[1].contains("b.md"), "{found:#?}");
    assert!(found[2].contains("#nope"), "{found:#?}");

    let section = '\u{a7}';
    let old = format!(
        "// see reference {section}3.1\n// (shared {}, machine-{}.md)\n// x {section}2.4\n\
         // RFC 1952 {section}2.2\n// (trap {})\n",
        "notes", "facts", 18
    );
    let found = old_citation_problems("old.rs", &old);
    let lines: Vec<&str> = found.iter().map(|p| p.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["1", "2", "2", "3", "5"], "{found:#?}");

    let links = "[ok](a.md#kernel-choice) [web](https://x.org/#y) [bad](a.md#nope) [gone](c.md)";
    let found = link_problems("a.md", links, &docs);
    assert_eq!(found.len(), 2, "{found:#?}");
}
