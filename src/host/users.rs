//! Users of the running system, looked up through libc (`getpwuid_r`,
//! `getpwnam_r`), that is through NSS: users that exist only in LDAP, SSSD
//! or as systemd `DynamicUser`s count as users, as they do for libguestfs
//! and for every other program on the host. Reading `/etc/passwd` ourselves
//! would call them "gone", and `cache clean` would delete their caches.
//!
//! Callers that decide something from a user's existence take a
//! [`UserDb`], so that unit tests can hand in a fixed table. Caches are
//! per-user directories of the live host, never of a `--root` fixture tree,
//! so there is no "users of another root" here.

/// A user as the system's user database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub(crate) name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Errors from user lookups.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A user name is unknown.
    #[error("no user {name:?} in the system's user database: create the user first, or give a numeric UID")]
    UnknownName {
        /// The name given.
        name: String,
    },
    /// A uid that has to be a real user (e.g. for `cache prime`) is unknown.
    #[error("uid {uid} has no user in the system's user database: create the user first (the cache needs its group too)")]
    UnknownUid {
        /// The uid.
        uid: u32,
    },
    /// The lookup itself failed (not "no such user"): a directory service
    /// that does not answer, a broken nsswitch.conf.
    #[error("looking up {what} in the system's user database failed: {source}; check /etc/nsswitch.conf and that its directory services (LDAP, SSSD) answer")]
    Lookup {
        /// `user NAME` or `uid N`.
        what: String,
        /// The error getpwuid_r/getpwnam_r returned.
        source: nix::Error,
    },
}

/// Where users are looked up.
pub trait UserDb {
    /// The user with this uid; `Ok(None)` only when the database answered
    /// "no such user".
    ///
    /// Errors: [`UserError::Lookup`] when it could not answer.
    fn by_uid(&self, uid: u32) -> Result<Option<User>, UserError>;

    /// The user with this name; `Ok(None)` only when the database answered
    /// "no such user".
    ///
    /// Errors: [`UserError::Lookup`] when it could not answer.
    fn by_name(&self, name: &str) -> Result<Option<User>, UserError>;

    /// A `NAME` or `UID` from the command line as a uid. A name must exist;
    /// a number is taken as is (the user may be gone, which is what
    /// `cache clean` looks for). A name made of digits is looked up as a
    /// name first.
    ///
    /// Errors: an unknown name that is not a number, or a failed lookup.
    fn resolve_uid(&self, spec: &str) -> Result<u32, UserError> {
        if let Some(user) = self.by_name(spec)? {
            return Ok(user.uid);
        }
        spec.parse().map_err(|_| UserError::UnknownName { name: spec.to_string() })
    }

    /// The user for a uid that must exist.
    ///
    /// Errors: [`UserError::UnknownUid`], or a failed lookup.
    fn require_uid(&self, uid: u32) -> Result<User, UserError> {
        self.by_uid(uid)?.ok_or(UserError::UnknownUid { uid })
    }
}

/// The running system's user database, through libc and NSS.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemUsers;

/// Whether an error from getpwuid_r/getpwnam_r means "no such user".
/// glibc answers that with 0 and no entry, but getpwnam(3) lists "0 or
/// ENOENT or ESRCH or EBADF or EPERM or ..." as "the given name or uid was
/// not found", and other implementations use them: nss_wrapper, for
/// example, returns ENOENT. Anything else (EIO, EAGAIN, ETIMEDOUT,
/// ECONNREFUSED, ENOMEM, ...) is a lookup that failed.
fn means_not_found(errno: nix::Error) -> bool {
    use nix::errno::Errno;
    matches!(errno, Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM)
}

/// A libc lookup result as ours.
fn answer(
    result: nix::Result<Option<nix::unistd::User>>,
    what: impl FnOnce() -> String,
) -> Result<Option<User>, UserError> {
    match result {
        Ok(user) => Ok(user.map(User::from)),
        Err(errno) if means_not_found(errno) => Ok(None),
        Err(source) => Err(UserError::Lookup { what: what(), source }),
    }
}

impl UserDb for SystemUsers {
    fn by_uid(&self, uid: u32) -> Result<Option<User>, UserError> {
        answer(nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)), || format!("uid {uid}"))
    }

    fn by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        // A name with a NUL byte cannot exist (and libc cannot be asked).
        if name.contains('\0') {
            return Ok(None);
        }
        answer(nix::unistd::User::from_name(name), || format!("user {name:?}"))
    }
}

impl From<nix::unistd::User> for User {
    fn from(u: nix::unistd::User) -> User {
        User { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw() }
    }
}

/// A fixed list of users, for unit tests of code that takes a [`UserDb`].
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct UserTable {
    pub(crate) users: Vec<User>,
    /// Uids whose lookup fails (as with an LDAP server that is down).
    pub(crate) failing: Vec<u32>,
}

#[cfg(test)]
impl UserTable {
    /// A table of `(name, uid, gid)`.
    pub(crate) fn new(users: &[(&str, u32, u32)]) -> UserTable {
        UserTable {
            users: users.iter().map(|&(name, uid, gid)| User { name: name.into(), uid, gid }).collect(),
            failing: Vec::new(),
        }
    }
}

#[cfg(test)]
impl UserDb for UserTable {
    fn by_uid(&self, uid: u32) -> Result<Option<User>, UserError> {
        if self.failing.contains(&uid) {
            return Err(UserError::Lookup { what: format!("uid {uid}"), source: nix::Error::EIO });
        }
        Ok(self.users.iter().find(|u| u.uid == uid).cloned())
    }

    fn by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        Ok(self.users.iter().find(|u| u.name == name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_names_first_then_numbers() {
        let t = UserTable::new(&[("root", 0, 0), ("svc", 1001, 1002), ("4242", 7, 7)]);
        assert_eq!(t.resolve_uid("svc").unwrap(), 1001);
        assert_eq!(t.resolve_uid("4242").unwrap(), 7, "a name made of digits is a name first");
        assert_eq!(t.resolve_uid("5000").unwrap(), 5000);
        let err = t.resolve_uid("nobody-here").unwrap_err().to_string();
        assert!(err.contains("nobody-here") && err.contains("create the user"), "{err}");
        assert_eq!(t.require_uid(1001).unwrap().gid, 1002);
        assert!(matches!(t.require_uid(5000), Err(UserError::UnknownUid { uid: 5000 })));
    }

    #[test]
    fn documented_not_found_errors_are_no_user_and_others_fail() {
        use nix::errno::Errno;
        assert_eq!(answer(Err(Errno::ENOENT), || "uid 5".into()).unwrap(), None);
        assert_eq!(answer(Ok(None), || "uid 5".into()).unwrap(), None);
        let err = answer(Err(Errno::EIO), || "uid 5".into()).unwrap_err().to_string();
        assert!(err.contains("uid 5") && err.contains("nsswitch.conf"), "{err}");
    }

    #[test]
    fn system_users_come_from_libc() {
        let root = SystemUsers.by_uid(0).unwrap().expect("uid 0 exists on every system");
        assert_eq!(root.name, "root");
        assert_eq!(SystemUsers.by_name("root").unwrap().map(|u| u.uid), Some(0));
        assert_eq!(SystemUsers.by_name("no-such-user-ga\0x").unwrap(), None);
        // The highest uid is reserved ((uid_t)-1) and never a user.
        assert_eq!(SystemUsers.by_uid(u32::MAX).unwrap(), None);
    }
}
