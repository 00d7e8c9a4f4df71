//! The one `rpm -qa` query the handler runs for Berkeley DB and ndb
//! databases (and for an sqlite one the direct reader, `rpm/sqlite.rs`,
//! refuses), and its parser.
//!
//! # What makes it cheap
//!
//! rpm's own work dominates: loading every header, formatting every field.
//! Measured on `scripts/bench-pkgdb.sh`'s database (880 packages, 47,000
//! files; CPU time of the rpm process, median of rounds of 10):
//!
//! | query | CPU |
//! |---|---|
//! | names only | 18 ms |
//! | the former query (every path `:shescape`d, flags and modes) | 55–62 ms |
//! | the same without header digest checks | 47–49 ms |
//! | this one | 40 ms |
//! | headers + ownership only, then the closure's files by a second `rpm -q --querybynumber` | 29 + 21–29 ms |
//!
//! Two things make the difference:
//!
//! - `--nodigest --nosignature`: by default rpm checks every header it
//!   reads from the database against its SHA digests (and loads the
//!   keyring). Reading the database that rpm itself wrote needs no such
//!   check (libsolv, which dnf reads it through, skips it too); `rpm
//!   --verifydb` is the tool for a damaged database.
//! - Paths are printed as each package's directory names (`:shescape`d,
//!   few) and, per file, its directory index and its *raw* base name:
//!   rpm's `:shescape` costs far more per path than an index.
//!
//! Reading only the closure's files with a second query costs more here
//! than formatting everyone's flags and modes: a second rpm process starts
//! and reloads those headers (the last row). On a host whose closure is a
//! much smaller part of a much larger database the two would about break
//! even (estimated from these rows), so the simpler, one-snapshot query
//! stays.
//!
//! # Why raw base names are safe
//!
//! rpm splits each path at its last `/`: a base name never holds one. Every
//! record line starts with `/` (`/P`, `/R`, `/V`, `/D`, `/F`), so a line
//! that does not is the rest of a base name that held a newline (rpmbuild
//! refuses such names, other tools may not): it is joined back, and no
//! base name can be taken for a record. The raw name is the last field of
//! its line, so spaces and quotes in it need no quoting either.

use std::collections::HashSet;
use std::ffi::OsString;
use std::ops::Range;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::installed::{collect_paths, Installed, Requirement, RpmFile};
use crate::package::{Package, PackageError};

/// The `rpm -qa` query format (see the module docs).
pub(super) const QUERY_FORMAT: &str = "/P %{NAME:shescape} %{EVR:shescape} %{ARCH:shescape}\\n\
     [/R %{REQUIRENAME:shescape} %{REQUIREFLAGS} %{REQUIREVERSION:shescape}\\n]\
     [/V %{PROVIDENAME:shescape}\\n]\
     [/D %{DIRNAMES:shescape}\\n]\
     [/F %{DIRINDEXES} %{FILEFLAGS} %{FILEMODES} %{BASENAMES}\\n]";

/// The advice of a [`PackageError::Corrupt`] for output that cannot be parsed.
const CORRUPT_HINT: &str =
    "rpm printed something this tool cannot parse; check the database with `rpm --verifydb` (or rebuild it with `rpm --rebuilddb`)";

/// One `/F` record: a file of a package, its base name a range of the
/// query output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Index into the package's directory names (checked when parsed).
    dir: u32,
    flags: u32,
    mode: u32,
    /// The raw base name: `out[start..end]`.
    start: usize,
    end: usize,
}

/// Every package's files as the query printed them: paths are put together
/// only for the packages [`FileTable::records`] is asked about (the
/// closure), not for the whole database.
#[derive(Debug, Default)]
pub(super) struct FileTable {
    out: Vec<u8>,
    entries: Vec<Entry>,
}

impl FileTable {
    /// The file records of `package` (whose [`Installed::files`] index
    /// this table).
    pub(super) fn records<'a>(&'a self, package: &'a Installed) -> impl Iterator<Item = RpmFile> + 'a {
        let dirs = &package.dirs;
        self.entries[package.files.clone()].iter().map(move |e| RpmFile {
            path: PathBuf::from(OsString::from_vec(
                [dirs[e.dir as usize].as_slice(), &self.out[e.start..e.end]].concat(),
            )),
            flags: e.flags,
            mode: e.mode,
        })
    }

    /// Adds one file record (the direct reader's way in): `base` is copied
    /// after the others.
    pub(super) fn push(&mut self, dir: u32, flags: u32, mode: u32, base: &[u8]) {
        let start = self.out.len();
        self.out.extend_from_slice(base);
        self.entries.push(Entry { dir, flags, mode, start, end: self.out.len() });
    }

    /// The number of records.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Parses the query's output into packages and the table of their files;
/// each package's [`Installed::owned`] gets its files that some package
/// requires by path (what the closure needs of other packages' files).
pub(super) fn parse(out: Vec<u8>, db: &Path) -> Result<(Vec<Installed>, FileTable), PackageError> {
    let corrupt = |line: usize, message: String| PackageError::Corrupt {
        path: db.to_path_buf(),
        line,
        message: format!("rpm output line {line}: {message}"),
        hint: CORRUPT_HINT,
    };
    let mut cur = Cursor { bytes: &out, pos: 0, line: 1 };
    let mut installed: Vec<Installed> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    // Whether the previous record was a `/F`, which a line not starting
    // with `/` continues.
    let mut after_file = false;
    while cur.pos < out.len() {
        let line = cur.line;
        if out[cur.pos] != b'/' {
            let Some(entry) = entries.last_mut().filter(|_| after_file) else {
                return Err(corrupt(line, "a line that is no record".into()));
            };
            entry.end = cur.rest_of_line();
            continue;
        }
        // The one record of every file: read without the general word
        // reader (most of the output).
        if out[cur.pos..].starts_with(b"/F ") {
            after_file = true;
            cur.pos += 3;
            let Some(current) = installed.last_mut() else {
                return Err(corrupt(line, "a record before the first package".into()));
            };
            let mut field = |what| cur.digits(what).map_err(|m| corrupt(line, m));
            let (dir, flags, mode) = (field("directory index")?, field("file flags")?, field("file mode")?);
            if dir as usize >= current.dirs.len() {
                return Err(corrupt(line, format!("directory index {dir} out of range")));
            }
            let start = cur.pos;
            let end = cur.rest_of_line();
            entries.push(Entry { dir, flags, mode, start, end });
            current.files.end = entries.len();
            continue;
        }
        let tag = cur.bare("record").map_err(|m| corrupt(line, m))?;
        after_file = false;
        if tag == b"/P" {
            let name = cur.text("package name").map_err(|m| corrupt(line, m))?;
            let version = cur.text("version").map_err(|m| corrupt(line, m))?;
            let arch = cur.text("arch").map_err(|m| corrupt(line, m))?;
            installed.push(Installed {
                pkg: Package { name, version, arch },
                requires: Vec::new(),
                provides: Vec::new(),
                owned: Vec::new(),
                dirs: Vec::new(),
                files: entries.len()..entries.len(),
            });
            cur.end_of_line().map_err(|m| corrupt(line, m))?;
            continue;
        }
        let Some(current) = installed.last_mut() else {
            return Err(corrupt(line, "a record before the first package".into()));
        };
        match tag {
            b"/R" => {
                let name = cur.text("requirement").map_err(|m| corrupt(line, m))?;
                let flags = cur.number("requirement flags").map_err(|m| corrupt(line, m))?;
                let version = cur.text("requirement version").map_err(|m| corrupt(line, m))?;
                current.requires.push(Requirement { name, flags, version });
            }
            b"/V" => current.provides.push(cur.text("provide").map_err(|m| corrupt(line, m))?),
            b"/D" => current.dirs.push(cur.bytes("directory name").map_err(|m| corrupt(line, m))?),
            other => {
                return Err(corrupt(line, format!("unexpected {:?}", String::from_utf8_lossy(other))));
            }
        }
        cur.end_of_line().map_err(|m| corrupt(line, m))?;
    }
    let table = FileTable { out, entries };
    index_required_paths(&mut installed, &table);
    Ok((installed, table))
}

/// Fills [`Installed::owned`]: a file's path is put together only when its
/// base name ends some required path.
pub(super) fn index_required_paths(installed: &mut [Installed], table: &FileTable) {
    let mut required: HashSet<Vec<u8>> = HashSet::new();
    for p in installed.iter() {
        for r in &p.requires {
            collect_paths(&r.name, &mut |path| {
                required.insert(path.as_bytes().to_vec());
            });
        }
    }
    if required.is_empty() {
        return;
    }
    let base_names: HashSet<&[u8]> =
        required.iter().map(|p| &p[p.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)..]).collect();
    for p in installed.iter_mut() {
        let range: Range<usize> = p.files.clone();
        for e in &table.entries[range] {
            let base = &table.out[e.start..e.end];
            if !base_names.contains(base) {
                continue;
            }
            let path = [p.dirs[e.dir as usize].as_slice(), base].concat();
            if required.contains(&path) {
                p.owned.push(PathBuf::from(OsString::from_vec(path)));
            }
        }
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

/// One word of rpm's output.
enum Word<'a> {
    /// A shescaped string, unquoted.
    Quoted(Vec<u8>),
    /// A bare word: a record tag, a number or `(none)`.
    Bare(&'a [u8]),
}

impl<'a> Cursor<'a> {
    /// The next word, spaces before it skipped; `what` names it in errors.
    fn word(&mut self, what: &str) -> Result<Word<'a>, String> {
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
                Ok(Word::Bare(word))
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
    fn bare(&mut self, what: &str) -> Result<&'a [u8], String> {
        match self.word(what)? {
            Word::Bare(b) => Ok(b),
            Word::Quoted(b) => Err(format!("expected a {what}, found '{}'", String::from_utf8_lossy(&b))),
        }
    }

    /// A string's bytes (`(none)` is empty).
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, String> {
        Ok(match self.word(what)? {
            Word::Quoted(b) => b,
            Word::Bare(b"(none)") => Vec::new(),
            Word::Bare(b) => b.to_vec(),
        })
    }

    /// A string, lossily decoded.
    fn text(&mut self, what: &str) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.bytes(what)?).into_owned())
    }

    /// A decimal number (`(none)` is 0).
    fn number(&mut self, what: &str) -> Result<u32, String> {
        let word = self.bare(what)?;
        if word == b"(none)" {
            return Ok(0);
        }
        let digits = |w: &[u8]| -> Option<u32> {
            if w.is_empty() || w.len() > 10 {
                return None;
            }
            w.iter()
                .try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))?
                .try_into()
                .ok()
        };
        digits(word).ok_or_else(|| format!("expected the {what}, found {:?}", String::from_utf8_lossy(word)))
    }

    /// A decimal number and the one space after it (a `/F` record's
    /// fields).
    fn digits(&mut self, what: &str) -> Result<u32, String> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(&c) = self.bytes.get(self.pos).filter(|c| c.is_ascii_digit()) {
            n = n * 10 + u64::from(c - b'0');
            self.pos += 1;
            if n > u64::from(u32::MAX) {
                break;
            }
        }
        let found = &self.bytes[start..self.pos];
        match (u32::try_from(n), self.bytes.get(self.pos)) {
            (Ok(n), Some(b' ')) if !found.is_empty() => {
                self.pos += 1;
                Ok(n)
            }
            _ => Err(format!("expected the {what}, found {:?}", String::from_utf8_lossy(found))),
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
