//! The source layout keeps its arrows (issue 9): dependencies between the
//! library's files point one way, and the library never reaches up into
//! the command line. Text only; it runs no binary.
//!
//! The rules, as this file checks them:
//!
//! - **Files.** Every `.rs` file under `src/` is a node, except the
//!   binaries (`main.rs`, `bin/`), which sit on top and may use anything.
//!   Test code is left out: files named `tests.rs`, and from a
//!   `#[cfg(test)]` inline module (`mod tests { ... }`, by convention the
//!   last thing in a file) to the end of its file.
//! - **Edges.** File A depends on file B when A's code names something B
//!   defines: a `use` declaration (use-trees flattened, `as` renames
//!   followed) or a path in the code (`crate::x::f`, `super::T`,
//!   `self::child::g`, or `m::f` where `m` was imported or is a child
//!   module). A path resolves to the deepest module with a file of its own
//!   (inline modules belong to their file); when that file only
//!   re-exports the named item (`pub use` / `pub(crate) use`), the edge
//!   goes on to the file that defines it.
//! - **What is not an edge.** `mod x;` declarations and re-export lines
//!   themselves: a parent `mod.rs` listing what its children offer is
//!   structure, not use. A parent that *calls* a child while the child
//!   uses something defined in the parent is a real cycle (move the shared
//!   item into a leaf file, as `input/error.rs` and `package/contract.rs`
//!   do).
//! - **Cycles.** No strongly connected component of more than one file.
//! - **Boundary.** Outside `main.rs`, `bin/`, `cli.rs` and `commands/`, no
//!   file depends on `cli.rs` or `commands/`, and none names `clap`: a
//!   command turns its clap arguments into library types and calls down.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path (`["input", "classify"]`; the crate root is empty).
type ModPath = Vec<String>;

/// One source file, stripped of comments, string contents and test code.
struct SourceFile {
    /// Path relative to `src/`, `/`-separated.
    rel: String,
    module: ModPath,
    code: String,
}

/// The crate's files and what they re-export.
struct Crate {
    files: Vec<SourceFile>,
    by_module: BTreeMap<ModPath, usize>,
    /// Per file: re-exported name -> the absolute path it stands for.
    reexports: Vec<BTreeMap<String, ModPath>>,
}

/// A dependency edge with one path that caused it, for messages.
type Edges = Vec<BTreeMap<usize, String>>;

fn module_of(rel: &str) -> ModPath {
    let stem = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut parts: ModPath = stem.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

fn is_binary(rel: &str) -> bool {
    rel == "main.rs" || rel.starts_with("bin/")
}

fn is_test_file(rel: &str) -> bool {
    rel == "tests.rs" || rel.ends_with("/tests.rs")
}

/// Code without comments, with string and char literal contents blanked
/// (so neither a `//` in a string nor a path in a message counts).
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (i == 0 || !ident(chars[i - 1]) || chars[i - 1] == 'b')
            && matches!(next, Some('"' | '#'))
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('a', '\n', '"'), or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code before the first inline `#[cfg(test)]` module.
fn without_test_module(code: &str) -> &str {
    let mut offset = 0;
    let mut lines = code.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let next = lines.peek().map(|l| l.trim()).unwrap_or("");
            let decl = match next.strip_prefix("pub") {
                Some(rest) if rest.starts_with('(') => {
                    rest.split_once(')').map_or(rest, |(_, r)| r).trim_start()
                }
                Some(rest) => rest.trim_start(),
                None => next,
            };
            if decl.starts_with("mod ") && decl.ends_with('{') {
                return &code[..offset];
            }
        }
        offset += line.len();
    }
    code
}

fn load(src: &Path) -> Crate {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(src, &mut paths);
    let mut files = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
        if is_binary(&rel) || is_test_file(&rel) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let code = strip_comments_and_strings(&text);
        let code = without_test_module(&code).to_string();
        files.push(SourceFile { module: module_of(&rel), rel, code });
    }
    let by_module = files.iter().enumerate().map(|(i, f)| (f.module.clone(), i)).collect();
    let mut krate = Crate { files, by_module, reexports: Vec::new() };
    krate.reexports = (0..krate.files.len())
        .map(|i| {
            let file = &krate.files[i];
            use_declarations(&file.code)
                .into_iter()
                .filter(|u| u.reexport)
                .flat_map(|u| flatten(&u.tree))
                .filter_map(|(path, alias)| Some((alias, krate.absolute(i, &path, &BTreeMap::new())?)))
                .collect()
        })
        .collect();
    krate
}

/// One `use` declaration: its tree text, where that text is in the code,
/// and whether it is a re-export.
struct UseDecl {
    tree: String,
    span: std::ops::Range<usize>,
    reexport: bool,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn use_declarations(code: &str) -> Vec<UseDecl> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find("use") {
        let at = from + pos;
        from = at + 3;
        let before = code[..at].chars().next_back();
        let after = code[at + 3..].chars().next();
        if before.is_some_and(is_ident) || !after.is_some_and(char::is_whitespace) {
            continue;
        }
        let prefix = code[..at].trim_end();
        // `use` starts an item: after `;`, `{`, `}`, an attribute, the file
        // start, or a visibility.
        let reexport = prefix.ends_with("pub") || (prefix.ends_with(')') && prefix.contains("pub("));
        let starts_item = reexport || prefix.is_empty() || prefix.ends_with([';', '{', '}', ']']);
        if !starts_item {
            continue;
        }
        if reexport && prefix.ends_with(')') {
            // Make sure the parenthesis closes a visibility, not a call.
            let open = prefix.rfind('(').unwrap_or(0);
            if !prefix[..open].trim_end().ends_with("pub") {
                continue;
            }
        }
        let Some(end) = code[from..].find(';') else { break };
        let span = from..from + end;
        out.push(UseDecl { tree: code[span.clone()].to_string(), span, reexport });
        from += end;
    }
    out
}

/// Flatten a use-tree (`super::{a, b::{c as d, self}}`) into
/// (path segments, the name it binds) pairs; a glob binds `*`.
fn flatten(tree: &str) -> Vec<(Vec<String>, String)> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let close = tree.rfind('}').unwrap_or(tree.len());
            let mut head = prefix.to_vec();
            head.extend(tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
            for part in split_top(&tree[open + 1..close]) {
                if part == "self" {
                    let name = head.last().cloned().unwrap_or_default();
                    out.push((head.clone(), name));
                } else {
                    walk(&head, part, out);
                }
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut segs = prefix.to_vec();
        segs.extend(path.split("::").map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        let name = alias.unwrap_or_else(|| segs.last().cloned().unwrap_or_default());
        out.push((segs, name));
    }
    let squashed: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    walk(&[], &squashed, &mut out);
    out
}

/// Paths written in code (`a::b`, `crate::c::d`), outside `use`
/// declarations: each as its segments.
fn code_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident(chars[i]) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            segs.push(chars[start..j].iter().collect::<String>());
            if chars.get(j) == Some(&':')
                && chars.get(j + 1) == Some(&':')
                && chars.get(j + 2).is_some_and(|c| is_ident(*c))
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 && segs[0] != "use" {
            out.push(segs);
        }
        i = j.max(i + 1);
    }
    out
}

impl Crate {
    /// The absolute module path `path` names from file `file`, with the
    /// file's imports (`aliases`) for a first segment that is neither
    /// `crate`, `super`, `self` nor a child module. `None`: another crate.
    fn absolute(&self, file: usize, path: &[String], aliases: &BTreeMap<String, ModPath>) -> Option<ModPath> {
        let here = &self.files[file].module;
        let first = path.first()?;
        match first.as_str() {
            "crate" => Some(path[1..].to_vec()),
            "self" => Some(here.iter().chain(&path[1..]).cloned().collect()),
            "super" => {
                let ups = path.iter().take_while(|s| *s == "super").count();
                let base = &here[..here.len().checked_sub(ups)?];
                Some(base.iter().chain(&path[ups..]).cloned().collect())
            }
            _ => {
                let child: ModPath = here.iter().chain([first]).cloned().collect();
                if self.by_module.contains_key(&child) {
                    Some(here.iter().chain(path).cloned().collect())
                } else {
                    let target = aliases.get(first)?;
                    Some(target.iter().chain(&path[1..]).cloned().collect())
                }
            }
        }
    }

    /// The file that defines what `path` names, through re-exports.
    fn defining_file(&self, path: &[String], depth: usize) -> Option<usize> {
        let n = (0..=path.len()).rev().find(|n| self.by_module.contains_key(&path[..*n]))?;
        let file = self.by_module[&path[..n]];
        if let (Some(name), true) = (path.get(n), depth < 16) {
            if let Some(source) = self.reexports[file].get(name) {
                let mut through = source.clone();
                through.extend_from_slice(&path[n + 1..]);
                if let Some(found) = self.defining_file(&through, depth + 1) {
                    return Some(found);
                }
            }
        }
        Some(file)
    }

    fn edges(&self) -> Edges {
        (0..self.files.len())
            .map(|i| {
                let code = &self.files[i].code;
                let uses = use_declarations(code);
                let mut aliases = BTreeMap::new();
                let mut paths = Vec::new();
                for decl in &uses {
                    for (path, alias) in flatten(&decl.tree) {
                        let Some(abs) = self.absolute(i, &path, &BTreeMap::new()) else { continue };
                        if alias != "*" {
                            aliases.insert(alias, abs.clone());
                        }
                        if !decl.reexport {
                            paths.push(abs.into_iter().filter(|s| s != "*").collect::<ModPath>());
                        }
                    }
                }
                let mut rest = code.clone();
                for decl in &uses {
                    rest.replace_range(decl.span.clone(), &" ".repeat(decl.span.len()));
                }
                paths.extend(code_paths(&rest).iter().filter_map(|p| self.absolute(i, p, &aliases)));
                let mut out = BTreeMap::new();
                for path in paths {
                    if let Some(target) = self.defining_file(&path, 0).filter(|t| *t != i) {
                        out.entry(target).or_insert_with(|| path.join("::"));
                    }
                }
                out
            })
            .collect()
    }
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(edges: &Edges) -> Vec<Vec<usize>> {
    struct State<'e> {
        edges: &'e Edges,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.edges[v].keys() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let n = edges.len();
    let mut s = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.found
}

/// Each cycle as its files and the edges inside it, for the failure text.
fn describe_cycles(krate: &Crate, edges: &Edges) -> Vec<String> {
    cycles(edges)
        .into_iter()
        .map(|component| {
            let set: BTreeSet<usize> = component.iter().copied().collect();
            let mut text = String::from("cycle:");
            for &a in &component {
                for (b, why) in edges[a].iter().filter(|(b, _)| set.contains(b)) {
                    text.push_str(&format!("\n  {} -> {} ({why})", krate.files[a].rel, krate.files[*b].rel));
                }
            }
            text
        })
        .collect()
}

/// Whether `rel` may know about the command line.
fn is_command_line(rel: &str) -> bool {
    rel == "cli.rs" || rel.starts_with("commands/")
}

fn boundary_problems(krate: &Crate, edges: &Edges) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, file) in krate.files.iter().enumerate() {
        if is_command_line(&file.rel) {
            continue;
        }
        for (target, why) in &edges[i] {
            if is_command_line(&krate.files[*target].rel) {
                problems.push(format!("{} uses {} ({why})", file.rel, krate.files[*target].rel));
            }
        }
        if code_paths(&file.code).iter().any(|p| p[0] == "clap")
            || use_declarations(&file.code)
                .iter()
                .any(|u| flatten(&u.tree).iter().any(|(p, _)| p[0] == "clap"))
        {
            problems.push(format!("{} names clap (clap types belong in cli.rs)", file.rel));
        }
    }
    problems
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn issue9_no_import_cycle_between_source_files() {
    let krate = load(&src());
    assert!(krate.files.len() > 50, "found only {} files under src/", krate.files.len());
    let edges = krate.edges();
    let problems = describe_cycles(&krate, &edges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn issue9_library_never_imports_commands_cli_or_clap() {
    let krate = load(&src());
    let edges = krate.edges();
    let problems = boundary_problems(&krate, &edges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself, on a small tree: a parent that calls a child which
/// uses the parent's type is a cycle; the same parent merely re-exporting
/// a leaf's type is not; a library file naming clap is reported.
#[test]
fn issue9_layout_checker_finds_cycles_and_ignores_reexports() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = tmp.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod cli;\n");
    write("cli.rs", "#[derive(clap::Parser)]\npub struct Cli;\n");
    write(
        "a/mod.rs",
        "mod child;\nmod leaf;\npub use leaf::Shared;\n/// Doc: crate::cli::Cli\npub struct Own;\n\
         pub fn run() { child::work() }\n#[cfg(test)]\nmod tests {\n    use crate::cli::Cli;\n}\n",
    );
    write("a/child.rs", "use super::{Own, Shared};\npub fn work() { let _ = \"crate::cli\"; }\n");
    write("a/leaf.rs", "pub struct Shared;\n");
    let krate = load(tmp.path());
    let edges = krate.edges();
    let found = describe_cycles(&krate, &edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("a/mod.rs -> a/child.rs") && found[0].contains("a/child.rs -> a/mod.rs (a::Own)"),
        "{}",
        found[0]
    );
    assert!(boundary_problems(&krate, &edges).is_empty(), "comments, strings and tests do not count");

    // Own moved to the leaf, re-exported by the parent: no cycle.
    write(
        "a/mod.rs",
        "mod child;\nmod leaf;\npub use leaf::{Own, Shared};\npub fn run() { child::work() }\n",
    );
    write("a/leaf.rs", "pub struct Shared;\npub struct Own;\n");
    let krate = load(tmp.path());
    let edges = krate.edges();
    assert!(describe_cycles(&krate, &edges).is_empty(), "{:?}", describe_cycles(&krate, &edges));

    // A library file reaching the command line.
    write(
        "a/leaf.rs",
        "use crate::cli::Cli;\n#[derive(clap::ValueEnum)]\npub enum Shared { A }\npub struct Own;\n",
    );
    let krate = load(tmp.path());
    let edges = krate.edges();
    let problems = boundary_problems(&krate, &edges);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("a/leaf.rs uses cli.rs") && problems[1].contains("names clap"),
        "{problems:?}"
    );
}
