//! Parsing dpkg's status file (deb-status(5), deb-control(5)): which
//! packages are installed, their versions, architectures, Multi-Arch
//! values, dependencies and provides. The closure over them is
//! `closure.rs`'s; the handler that owns the parsed data is `mod.rs`.

use std::collections::HashMap;
use std::path::Path;

use crate::package::{Package, PackageError};

/// The advice of a [`PackageError::Corrupt`] from the dpkg handler.
pub(crate) const CORRUPT_HINT: &str =
    "the package database looks damaged; check it with `dpkg --audit` (dpkg keeps the previous copy in status-old)";

/// The `Multi-Arch` field of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MultiArch {
    No,
    Same,
    Foreign,
    Allowed,
}

/// One installed package and what the closure needs from its stanza.
#[derive(Debug)]
pub(super) struct Installed {
    pub(super) pkg: Package,
    pub(super) multi_arch: MultiArch,
    /// `Pre-Depends` groups, then `Depends` groups.
    pub(super) depends: Vec<DepGroup>,
    /// Virtual names from `Provides`, versions and qualifiers stripped.
    pub(super) provides: Vec<String>,
}

/// One comma-separated dependency: alternatives separated by `|`.
#[derive(Debug)]
pub(super) struct DepGroup {
    pub(super) raw: String,
    pub(super) alternatives: Vec<Alternative>,
}

/// One alternative: a name and an optional `:qualifier`.
#[derive(Debug)]
pub(super) struct Alternative {
    pub(super) name: String,
    pub(super) qualifier: Option<String>,
}

/// Splits `name:qualifier`; package names cannot contain `:`.
pub(super) fn split_qualifier(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((name, qual)) => (name, Some(qual)),
        None => (spec, None),
    }
}

/// The fields of one stanza that matter here, with their line numbers.
#[derive(Default)]
struct Stanza {
    start: usize,
    package: Option<String>,
    status: Option<(String, usize)>,
    version: Option<String>,
    arch: Option<String>,
    multi_arch: Option<String>,
    depends: Option<(String, usize)>,
    pre_depends: Option<(String, usize)>,
    provides: Option<(String, usize)>,
}

impl Stanza {
    /// The stored value a continuation line extends, if it is one we keep.
    fn field_mut(&mut self, field: Field) -> Option<&mut String> {
        match field {
            Field::Depends => self.depends.as_mut().map(|(v, _)| v),
            Field::PreDepends => self.pre_depends.as_mut().map(|(v, _)| v),
            Field::Provides => self.provides.as_mut().map(|(v, _)| v),
            Field::Other => None,
        }
    }
}

/// Which field a continuation line belongs to (only foldable fields we use).
#[derive(Clone, Copy)]
enum Field {
    Depends,
    PreDepends,
    Provides,
    Other,
}

/// Parses the status file and returns the installed packages.
pub(super) fn parse_status(text: &str, path: &Path) -> Result<Vec<Installed>, PackageError> {
    let corrupt = |line: usize, message: String| PackageError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
        hint: CORRUPT_HINT,
    };
    let mut out = Vec::new();
    let mut stanza: Option<Stanza> = None;
    let mut current = Field::Other;
    for (index, line) in text.split('\n').enumerate() {
        let lineno = index + 1;
        if line.trim().is_empty() {
            if let Some(done) = stanza.take() {
                if let Some(p) = finish_stanza(done, &corrupt)? {
                    out.push(p);
                }
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some(s) = stanza.as_mut() else {
                return Err(corrupt(lineno, "continuation line outside any field".into()));
            };
            if let Some(value) = s.field_mut(current) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(corrupt(lineno, format!("expected 'Field: value', found {line:?}")));
        };
        let s = stanza.get_or_insert_with(|| Stanza { start: lineno, ..Stanza::default() });
        current = Field::Other;
        // Field names are case-insensitive (deb-control(5)). Only the
        // fields we keep are copied: most lines of a status file are
        // descriptions, maintainers and conffiles (issue 12: this parse is
        // most of what `check` does after a touch of the database).
        let is = |field: &str| name.eq_ignore_ascii_case(field);
        let value = || value.trim().to_string();
        if is("package") {
            s.package = Some(value());
        } else if is("status") {
            s.status = Some((value(), lineno));
        } else if is("version") {
            s.version = Some(value());
        } else if is("architecture") {
            s.arch = Some(value());
        } else if is("multi-arch") {
            s.multi_arch = Some(value());
        } else if is("depends") {
            s.depends = Some((value(), lineno));
            current = Field::Depends;
        } else if is("pre-depends") {
            s.pre_depends = Some((value(), lineno));
            current = Field::PreDepends;
        } else if is("provides") {
            s.provides = Some((value(), lineno));
            current = Field::Provides;
        }
    }
    if let Some(done) = stanza.take() {
        if let Some(p) = finish_stanza(done, &corrupt)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Turns a complete stanza into an installed package, `None` if the package
/// is not installed (see the module docs for which states count).
fn finish_stanza(
    s: Stanza,
    corrupt: &dyn Fn(usize, String) -> PackageError,
) -> Result<Option<Installed>, PackageError> {
    let Some(name) = s.package else {
        return Err(corrupt(s.start, "stanza has no Package field".into()));
    };
    let Some((status, status_line)) = s.status else {
        return Err(corrupt(s.start, format!("package {name} has no Status field")));
    };
    let words: Vec<&str> = status.split_whitespace().collect();
    let [_want, _flag, state] = words.as_slice() else {
        return Err(corrupt(
            status_line,
            format!("package {name}: Status {status:?} does not have three words"),
        ));
    };
    match *state {
        "installed" | "triggers-pending" | "triggers-awaited" => {}
        "not-installed" | "config-files" | "half-installed" | "unpacked" | "half-configured" => {
            return Ok(None)
        }
        other => {
            return Err(corrupt(status_line, format!("package {name}: unknown package state {other:?}")))
        }
    }
    let Some(arch) = s.arch else {
        return Err(corrupt(s.start, format!("installed package {name} has no Architecture field")));
    };
    let Some(version) = s.version else {
        return Err(corrupt(s.start, format!("installed package {name} has no Version field")));
    };
    let multi_arch = match s.multi_arch.as_deref() {
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        // `no`, absent, or a value from the future: the strictest reading.
        _ => MultiArch::No,
    };
    let mut depends = Vec::new();
    for (value, line) in [s.pre_depends, s.depends].into_iter().flatten() {
        depends.extend(parse_depends(&value).map_err(|m| corrupt(line, format!("package {name}: {m}")))?);
    }
    let provides = match s.provides {
        Some((value, line)) => parse_depends(&value)
            .map_err(|m| corrupt(line, format!("package {name}: {m}")))?
            .into_iter()
            .flat_map(|g| g.alternatives)
            .map(|a| a.name)
            .collect(),
        None => Vec::new(),
    };
    Ok(Some(Installed { pkg: Package { name, version, arch }, multi_arch, depends, provides }))
}

/// Parses a dependency field (`a (>= 1), b | c:any, ...`).
///
/// Version constraints, `[arch]` restrictions and `<profile>` lists are
/// dropped (the last two only appear in source packages, but are harmless).
pub(super) fn parse_depends(value: &str) -> Result<Vec<DepGroup>, String> {
    let mut groups = Vec::new();
    for raw in value.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue; // a trailing comma
        }
        let mut alternatives = Vec::new();
        for alt in raw.split('|') {
            let alt = alt.trim();
            let end = alt.find(|c: char| c.is_whitespace() || "([<".contains(c)).unwrap_or(alt.len());
            let (name, qualifier) = split_qualifier(&alt[..end]);
            if name.is_empty() {
                return Err(format!("malformed dependency {raw:?}"));
            }
            alternatives
                .push(Alternative { name: name.to_string(), qualifier: qualifier.map(str::to_string) });
        }
        groups.push(DepGroup { raw: raw.to_string(), alternatives });
    }
    Ok(groups)
}

/// See the module docs: the arch of the installed `dpkg`, else the most
/// common arch among installed arch-specific packages.
pub(super) fn primary_arch(installed: &[Installed]) -> String {
    if let Some(p) = installed.iter().find(|p| p.pkg.name == "dpkg" && p.pkg.arch != "all") {
        return p.pkg.arch.clone();
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for p in installed.iter().filter(|p| p.pkg.arch != "all") {
        *counts.entry(p.pkg.arch.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map_or_else(|| "all".to_string(), |(arch, _)| arch.to_string())
}
