//! The two rpm queries the handler runs, and their parsers.
//!
//! # Why two queries
//!
//! Formatting every file of every package is what made one all-in-one
//! `rpm -qa` slow (about 60 of its 70 ms of CPU on 880 packages of 54
//! files: `:shescape` and the numbers of 47,000 files), and the closure needs
//! files only to resolve path requirements. So:
//!
//! 1. [`HEADERS_FORMAT`], `rpm -qa`: each package's header instance, name,
//!    `[epoch:]version-release`, arch, requires and provides (shescaped, as
//!    before), its directory names (shescaped: few), and per file only its
//!    directory index and its *raw* base name: what the installed-file
//!    index of required paths needs, at a fifth of the cost.
//! 2. [`FILES_FORMAT`], `rpm -q --querybynumber N…` with the closure's
//!    instances from query 1: their files (shescaped), flags and modes.
//!
//! Both pass `--nodigest --nosignature`: by default rpm checks every header
//! it reads from the database against its SHA digests (and loads the
//! keyring), which costs as much as the rest of query 1. Reading the
//! database that rpm itself wrote needs no such check (libsolv, which dnf
//! reads it through, skips it too); `rpm --verifydb` is the tool for a
//! damaged database.
//!
//! # Why raw base names are safe
//!
//! rpm splits each path at its last `/`: a base name never holds one. Every
//! record line starts with `/` (`/P`, `/R`, `/V`, `/D`, `/B`), so a line
//! that does not is the rest of a base name that held a newline (rpmbuild
//! refuses such names, other tools may not): it is joined back, and no
//! base name can be taken for a record. The raw name is the last field of
//! its line, so spaces and quotes in it need no quoting either.
//!
//! # The join
//!
//! Query 2 asks by header instance and prints each header's instance,
//! name, version and arch again: each must be one asked for and match what
//! query 1 read, or the database changed in between (an install or upgrade
//! meanwhile) and [`PackageError::Corrupt`] says to run again.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::{collect_paths, Installed, Requirement, RpmFile};
use crate::package::{Package, PackageError};

/// Query 1, for `rpm -qa` (see the module docs).
pub(super) const HEADERS_FORMAT: &str =
    "/P %{DBINSTANCE} %{NAME:shescape} %{EVR:shescape} %{ARCH:shescape}\\n\
     [/R %{REQUIRENAME:shescape} %{REQUIREFLAGS} %{REQUIREVERSION:shescape}\\n]\
     [/V %{PROVIDENAME:shescape}\\n]\
     [/D %{DIRNAMES:shescape}\\n]\
     [/B %{DIRINDEXES} %{BASENAMES}\\n]";

/// Query 2, for `rpm -q --querybynumber` (see the module docs).
pub(super) const FILES_FORMAT: &str = "/P %{DBINSTANCE} %{NAME:shescape} %{EVR:shescape} %{ARCH:shescape}\\n\
     [/F %{FILENAMES:shescape} %{FILEFLAGS} %{FILEMODES}\\n]";

/// The advice of a [`PackageError::Corrupt`] for output that cannot be parsed.
pub(super) const CORRUPT_HINT: &str =
    "rpm printed something this tool cannot parse; check the database with `rpm --verifydb` (or rebuild it with `rpm --rebuilddb`)";

/// The advice when query 2 disagrees with query 1.
pub(super) const CHANGED_HINT: &str =
    "the rpm database changed while it was read (a package was installed, upgraded or removed meanwhile); run the command again";

/// One package's files as query 2 listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// The header instance (rpm's `DBINSTANCE`).
    pub(super) instance: u32,
    /// Name, version and arch as printed.
    pub(super) pkg: Package,
    /// The files, in header order.
    pub(super) files: Vec<RpmFile>,
    /// The output line of its `/P` record, for messages.
    pub(super) line: usize,
}

/// A `/B` record of query 1: one file's directory index and base name,
/// as a range of the output.
struct BaseName {
    package: usize,
    dir: usize,
    start: usize,
    end: usize,
    line: usize,
}

/// Parses query 1's output into packages; each package's
/// [`Installed::owned`] gets its files that some package requires by path
/// (the only files the closure needs).
pub(super) fn parse_headers(out: &[u8], db: &Path) -> Result<Vec<Installed>, PackageError> {
    let corrupt = |line: usize, message: String| corrupt(db, line, message);
    let mut cur = Cursor { bytes: out, pos: 0, line: 1 };
    let mut installed: Vec<Installed> = Vec::new();
    let mut dirs: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bases: Vec<BaseName> = Vec::new();
    let mut instances: HashSet<u32> = HashSet::new();
    // Whether the previous record was a `/B`, which a line not starting
    // with `/` continues.
    let mut after_base = false;
    while cur.pos < out.len() {
        let line = cur.line;
        if out[cur.pos] != b'/' {
            let Some(base) = bases.last_mut().filter(|_| after_base) else {
                return Err(corrupt(line, "a line that is no record".into()));
            };
            base.end = cur.rest_of_line();
            continue;
        }
        let tag = cur.bare().map_err(|m| corrupt(line, m))?;
        after_base = tag == b"/B";
        if tag == b"/P" {
            let instance = cur.number("header instance").map_err(|m| corrupt(line, m))?;
            if !instances.insert(instance) {
                return Err(corrupt(line, format!("header instance {instance} listed twice")));
            }
            let pkg = package(&mut cur).map_err(|m| corrupt(line, m))?;
            installed.push(Installed {
                pkg,
                instance,
                requires: Vec::new(),
                provides: Vec::new(),
                owned: Vec::new(),
            });
            dirs.push(Vec::new());
            cur.end_of_line().map_err(|m| corrupt(line, m))?;
            continue;
        }
        let index = installed
            .len()
            .checked_sub(1)
            .ok_or_else(|| corrupt(line, "a record before the first package".into()))?;
        let current = &mut installed[index];
        match tag.as_slice() {
            b"/R" => {
                let name = cur.text("requirement").map_err(|m| corrupt(line, m))?;
                let flags = cur.number("requirement flags").map_err(|m| corrupt(line, m))?;
                let version = cur.text("requirement version").map_err(|m| corrupt(line, m))?;
                current.requires.push(Requirement { name, flags, version });
            }
            b"/V" => current.provides.push(cur.text("provide").map_err(|m| corrupt(line, m))?),
            b"/D" => dirs[index].push(cur.bytes("directory name").map_err(|m| corrupt(line, m))?),
            b"/B" => {
                let dir = cur.number("directory index").map_err(|m| corrupt(line, m))?;
                if cur.bytes.get(cur.pos) != Some(&b' ') {
                    return Err(corrupt(line, "expected a space before the base name".into()));
                }
                cur.pos += 1;
                let start = cur.pos;
                let end = cur.rest_of_line();
                bases.push(BaseName { package: index, dir: dir as usize, start, end, line });
                continue;
            }
            other => {
                return Err(corrupt(line, format!("unexpected {:?}", String::from_utf8_lossy(other))));
            }
        }
        cur.end_of_line().map_err(|m| corrupt(line, m))?;
    }
    // The installed-file index of required paths: a base name is looked at
    // further only when some required path ends with it.
    let mut required: HashSet<Vec<u8>> = HashSet::new();
    for p in &installed {
        for r in &p.requires {
            collect_paths(&r.name, &mut |path| {
                required.insert(path.as_bytes().to_vec());
            });
        }
    }
    let wanted_bases: HashSet<&[u8]> =
        required.iter().map(|p| &p[p.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)..]).collect();
    for b in &bases {
        let base = &out[b.start..b.end];
        if !wanted_bases.contains(base) {
            continue;
        }
        let Some(dir) = dirs[b.package].get(b.dir) else {
            return Err(corrupt(b.line, format!("directory index {} out of range", b.dir)));
        };
        let path = [dir.as_slice(), base].concat();
        if required.contains(&path) {
            installed[b.package].owned.push(PathBuf::from(OsString::from_vec(path)));
        }
    }
    Ok(installed)
}

/// Parses query 2's output.
pub(super) fn parse_files(out: &[u8], db: &Path) -> Result<Vec<Listed>, PackageError> {
    let corrupt = |line: usize, message: String| corrupt(db, line, message);
    let mut cur = Cursor { bytes: out, pos: 0, line: 1 };
    let mut listed: Vec<Listed> = Vec::new();
    while cur.pos < out.len() {
        let line = cur.line;
        let tag = cur.bare().map_err(|m| corrupt(line, m))?;
        match tag.as_slice() {
            b"/P" => {
                let instance = cur.number("header instance").map_err(|m| corrupt(line, m))?;
                let pkg = package(&mut cur).map_err(|m| corrupt(line, m))?;
                listed.push(Listed { instance, pkg, files: Vec::new(), line });
            }
            b"/F" => {
                let Some(current) = listed.last_mut() else {
                    return Err(corrupt(line, "a record before the first package".into()));
                };
                let path =
                    PathBuf::from(OsString::from_vec(cur.bytes("file name").map_err(|m| corrupt(line, m))?));
                let flags = cur.number("file flags").map_err(|m| corrupt(line, m))?;
                let mode = cur.number("file mode").map_err(|m| corrupt(line, m))?;
                if !path.is_absolute() {
                    return Err(corrupt(line, format!("file name {} is not absolute", path.display())));
                }
                current.files.push(RpmFile { path, flags, mode });
            }
            other => {
                return Err(corrupt(line, format!("unexpected {:?}", String::from_utf8_lossy(other))));
            }
        }
        cur.end_of_line().map_err(|m| corrupt(line, m))?;
    }
    Ok(listed)
}

/// Name, version and arch of a `/P` record.
fn package(cur: &mut Cursor<'_>) -> Result<Package, String> {
    let name = cur.text("package name")?;
    let version = cur.text("version")?;
    let arch = cur.text("arch")?;
    Ok(Package { name, version, arch })
}

/// A [`PackageError::Corrupt`] about rpm's output for the database `db`.
pub(super) fn corrupt(db: &Path, line: usize, message: String) -> PackageError {
    PackageError::Corrupt {
        path: db.to_path_buf(),
        line,
        message: format!("rpm output line {line}: {message}"),
        hint: CORRUPT_HINT,
    }
}

/// A reader of rpm's output: record lines of space-separated words, each a
/// shescaped string (`'…'`, a `'` written `'\''`; it may span lines) or a
/// bare word (a record tag, a number or rpm's `(none)`).
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The 1-based line at `pos`.
    line: usize,
}

impl Cursor<'_> {
    /// The next word, spaces before it skipped; `what` names it in errors.
    fn word(&mut self, what: &str) -> Result<Word, String> {
        while self.bytes.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            None | Some(b'\n') => Err(format!("the line ends before the {what}")),
            Some(b'\'') => self.quoted().map(Word::Quoted),
            Some(_) => {
                let start = self.pos;
                while self.bytes.get(self.pos).is_some_and(|&c| c != b' ' && c != b'\n') {
                    self.pos += 1;
                }
                let word = &self.bytes[start..self.pos];
                if word.contains(&b'\'') || word.contains(&b'\\') {
                    return Err(format!("unexpected quote in {:?}", String::from_utf8_lossy(word)));
                }
                Ok(Word::Bare(word.to_vec()))
            }
        }
    }

    /// A shescaped string at `pos`, unquoted.
    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            match (self.bytes.get(self.pos), self.bytes.get(self.pos + 1)) {
                (Some(b'\''), _) => {
                    self.pos += 1;
                    let Some(len) = self.bytes[self.pos..].iter().position(|&c| c == b'\'') else {
                        return Err("unterminated quoted string".into());
                    };
                    let segment = &self.bytes[self.pos..self.pos + len];
                    self.line += segment.iter().filter(|&&c| c == b'\n').count();
                    out.extend_from_slice(segment);
                    self.pos += len + 1;
                }
                (Some(b'\\'), Some(b'\'')) => {
                    out.push(b'\'');
                    self.pos += 2;
                }
                (None | Some(b' ' | b'\n'), _) => return Ok(out),
                (Some(&c), _) => return Err(format!("unexpected byte {c:#04x} after a quoted string")),
            }
        }
    }

    /// A bare word (a record tag).
    fn bare(&mut self) -> Result<Vec<u8>, String> {
        match self.word("record")? {
            Word::Bare(b) => Ok(b),
            Word::Quoted(b) => Err(format!("expected a record, found '{}'", String::from_utf8_lossy(&b))),
        }
    }

    /// A string's bytes (`(none)` is empty).
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, String> {
        Ok(match self.word(what)? {
            Word::Quoted(b) => b,
            Word::Bare(b) if b == b"(none)" => Vec::new(),
            Word::Bare(b) => b,
        })
    }

    /// A string, lossily decoded.
    fn text(&mut self, what: &str) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.bytes(what)?).into_owned())
    }

    /// A number (`(none)` is 0).
    fn number(&mut self, what: &str) -> Result<u32, String> {
        match self.word(what)? {
            Word::Bare(b) if b == b"(none)" => Ok(0),
            Word::Bare(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("expected the {what}, found {:?}", String::from_utf8_lossy(&b))),
            Word::Quoted(b) => Err(format!("expected the {what}, found '{}'", String::from_utf8_lossy(&b))),
        }
    }

    /// The end of a record: spaces, then a newline or the end.
    fn end_of_line(&mut self) -> Result<(), String> {
        while self.bytes.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            None => Ok(()),
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                Ok(())
            }
            Some(_) => Err("unexpected text at the end of the record".into()),
        }
    }

    /// Skips to the start of the next line; returns where this one ends
    /// (before its newline).
    fn rest_of_line(&mut self) -> usize {
        let end = self.bytes[self.pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.bytes.len(), |n| self.pos + n);
        self.pos = (end + 1).min(self.bytes.len());
        self.line += 1;
        end
    }
}

/// One word of rpm's output.
#[derive(Debug, PartialEq, Eq)]
enum Word {
    /// A shescaped string, unquoted.
    Quoted(Vec<u8>),
    /// A bare word: a record tag, a number or `(none)`.
    Bare(Vec<u8>),
}
