//! The direct reader of sqlite rpm databases (`rpmdb.sqlite`): every
//! package's header blob from the `Packages` table, parsed by
//! [`super::header`] into exactly what the `rpm -qa` query
//! (`rpm/query.rs`) prints of it.
//!
//! # Why
//!
//! `rpm -qa` costs 40 ms of rpm's own CPU on `scripts/bench-pkgdb.sh`'s
//! database (880 packages, 47,000 files), ≥ 17 ms of it before the first
//! header is formatted; reading the 880 blobs (7 MB) costs about 3 ms and
//! parsing them about as much. Berkeley DB and ndb databases are still read
//! through rpm.
//!
//! # Safety against a running rpm
//!
//! The database is opened read-only (`SQLITE_OPEN_READ_ONLY`, no URI
//! names) with sqlite's normal locking: rpm keeps it in WAL mode, so the
//! one `SELECT` reads a consistent snapshot while rpm may be writing, and
//! never blocks rpm. (`immutable=1` would skip the locks and could read a
//! half-written database.)
//!
//! # Equivalence with the query
//!
//! The same tags, the same way: `%{EVR}` is rpm's `[epoch:]version-release`
//! (tagexts.c `getNEVRA`: epoch when present, `version-` when present,
//! release when present), a missing string is empty as the query parser
//! reads rpm's `(none)`, integers unsigned, strings decoded lossily as the
//! parser decodes them, packages in `hnum` order as rpm iterates them.
//! Anything the query would print differently or not at all (a tag of an
//! unexpected type, arrays of different sizes that rpm's `[...]` iteration
//! refuses, a directory index out of range, a header rpm would call
//! damaged) is an error here: the handler then asks rpm (and says so with
//! `-v`). `tests/integration/pkgdb.rs` compares both readers on databases
//! rpm wrote.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::header::Header;
use super::installed::{Installed, Requirement};
use super::query::{index_required_paths, FileTable};
use crate::package::Package;

const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const ARCH: u32 = 1022;
const FILEMODES: u32 = 1030;
const FILEFLAGS: u32 = 1037;
const PROVIDENAME: u32 = 1047;
const REQUIREFLAGS: u32 = 1048;
const REQUIRENAME: u32 = 1049;
const REQUIREVERSION: u32 = 1050;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;

/// Every tag the query prints (and `%{EVR}` reads).
const TAGS: [u32; 14] = [
    NAME,
    VERSION,
    RELEASE,
    EPOCH,
    ARCH,
    FILEMODES,
    FILEFLAGS,
    PROVIDENAME,
    REQUIREFLAGS,
    REQUIRENAME,
    REQUIREVERSION,
    DIRINDEXES,
    BASENAMES,
    DIRNAMES,
];

/// How long to wait for a lock (only a WAL recovery by another process
/// holds readers back).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads every package of the sqlite database `db`.
///
/// # Errors
/// Why the database cannot be read directly, naming the package (`hnum`)
/// for a header: the caller falls back to rpm.
pub(super) fn read(db: &Path) -> Result<(Vec<Installed>, FileTable), String> {
    let sql = |e: rusqlite::Error| format!("sqlite: {e}");
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum").map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut installed = Vec::new();
    let mut table = FileTable::default();
    while let Some(row) = rows.next().map_err(sql)? {
        let hnum: i64 = row.get(0).map_err(sql)?;
        let blob = row.get_ref(1).map_err(sql)?.as_blob().map_err(|e| format!("package #{hnum}: {e}"))?;
        let package = convert(blob, &mut table).map_err(|e| format!("package #{hnum}: {e}"))?;
        installed.push(package);
    }
    index_required_paths(&mut installed, &table);
    Ok((installed, table))
}

/// Lossy text, as the query parser decodes rpm's output.
fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()
}

/// rpm's `%{EVR}` (see the module docs).
fn evr(h: &Header<'_>) -> Result<String, String> {
    let mut out = String::new();
    if let Some(epochs) = h.u32s(EPOCH)? {
        match epochs.as_slice() {
            [epoch] => out.push_str(&format!("{epoch}:")),
            _ => return Err(format!("{} epochs", epochs.len())),
        }
    }
    if let Some(version) = h.string(VERSION)? {
        out.push_str(&String::from_utf8_lossy(version));
        out.push('-');
    }
    if let Some(release) = h.string(RELEASE)? {
        out.push_str(&String::from_utf8_lossy(release));
    }
    Ok(out)
}

/// Parses one header into a package, its files appended to `table`.
pub(super) fn convert(blob: &[u8], table: &mut FileTable) -> Result<Installed, String> {
    let h = Header::parse(blob, &TAGS)?;
    let pkg = Package { name: text(h.string(NAME)?), version: evr(&h)?, arch: text(h.string(ARCH)?) };

    let requires = match (h.strings(REQUIRENAME)?, h.u32s(REQUIREFLAGS)?, h.strings(REQUIREVERSION)?) {
        (None, None, None) => Vec::new(),
        (Some(names), Some(flags), Some(versions))
            if names.len() == flags.len() && names.len() == versions.len() =>
        {
            names
                .iter()
                .zip(flags)
                .zip(versions)
                .map(|((name, flags), version)| Requirement {
                    name: text(Some(name)),
                    flags,
                    version: text(Some(version)),
                })
                .collect()
        }
        _ => return Err("requirement names, flags and versions do not match".into()),
    };
    let provides = h.strings(PROVIDENAME)?.unwrap_or_default().into_iter().map(|p| text(Some(p))).collect();
    let dirs: Vec<Vec<u8>> =
        h.strings(DIRNAMES)?.unwrap_or_default().into_iter().map(<[u8]>::to_vec).collect();

    let start = table.len();
    match (h.u32s(DIRINDEXES)?, h.u32s(FILEFLAGS)?, h.u16s(FILEMODES)?, h.strings(BASENAMES)?) {
        (None, None, None, None) => {}
        (Some(indexes), Some(flags), Some(modes), Some(names))
            if [flags.len(), modes.len(), names.len()].iter().all(|&n| n == indexes.len()) =>
        {
            for (((dir, flags), mode), name) in indexes.into_iter().zip(flags).zip(modes).zip(names) {
                if dir as usize >= dirs.len() {
                    return Err(format!("directory index {dir} out of range ({} directories)", dirs.len()));
                }
                table.push(dir, flags, mode, name);
            }
        }
        _ => return Err("file directory indexes, flags, modes and base names do not match".into()),
    }
    let files = start..table.len();
    Ok(Installed { pkg, requires, provides, owned: Vec::new(), dirs, files })
}
