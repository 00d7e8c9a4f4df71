//! `fnmatch(3)`-compatible glob matching on bytes: the one matcher for
//! every pattern we apply (excludefiles, hostfiles components, the kernel
//! search's `vmlinu?-*-MODEL`, the initrd's module lists, private-file
//! names).
//!
//! supermin calls `fnmatch(pattern, path, FNM_NOESCAPE)`
//! (docs/supermin-compat.md, "excludefiles"):
//! no `FNM_PATHNAME` and no `FNM_PERIOD`, so `*` and `?` also match `/` and a
//! leading `.`, and a backslash is an ordinary character. We implement that
//! here on bytes (the C locale), rather than calling libc, so the behaviour
//! is the same in a static binary on any host. Deciding *which* paths a
//! pattern is applied to is left to the caller.

/// `fnmatch(pattern, s, FNM_NOESCAPE)` on bytes: `*` matches any sequence
/// (including `/` and leading dots), `?` any one byte, `[...]` a bracket
/// expression with `!`/`^` negation, ranges and `[:class:]` names; an
/// unterminated `[` is an ordinary character. Returns true on a match.
pub(crate) fn fnmatch(pattern: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the most recent `*`: (pattern index after the
    // star, subject index the star currently extends to). One backtrack
    // point is enough because a later star subsumes an earlier one.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pattern.len() {
            match pattern[pi] {
                b'*' => {
                    pi += 1;
                    star = Some((pi, si));
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => match bracket(pattern, pi, s[si]) {
                    Some((true, next)) => {
                        pi = next;
                        si += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // Unterminated: `[` stands for itself.
                    None if s[si] == b'[' => {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                    None => {}
                },
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((after, extent)) => {
                pi = after;
                si = extent + 1;
                star = Some((after, extent + 1));
            }
            None => return false,
        }
    }
    pattern[pi..].iter().all(|&c| c == b'*')
}

/// Match `c` against the bracket expression starting at `pattern[open]`
/// (which is `[`). Returns `(matched, index after the closing ])`, or `None`
/// when the expression is not terminated.
fn bracket(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &b = pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if b == b'[' && pattern.get(i + 1) == Some(&b':') {
            if let Some(len) = find(&pattern[i + 2..], b":]") {
                let name = &pattern[i + 2..i + 2 + len];
                matched |= class_matches(name, c);
                i += 2 + len + 2;
                continue;
            }
        }
        // A range `a-z`, unless the `-` is the last thing before `]`.
        if pattern.get(i + 1) == Some(&b'-') {
            if let Some(&hi) = pattern.get(i + 2) {
                if hi != b']' {
                    matched |= b <= c && c <= hi;
                    i += 3;
                    continue;
                }
            }
        }
        matched |= b == c;
        i += 1;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// POSIX character classes in the C locale. An unknown name matches
/// nothing (glibc reports an error, which supermin treats as no match).
fn class_matches(name: &[u8], c: u8) -> bool {
    match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        fnmatch(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn star_crosses_slashes_but_needs_the_prefix() {
        // `/usr/share/doc/*` removes everything below, not the dir
        // (docs/supermin-compat.md, "excludefiles").
        assert!(m("/usr/share/doc/*", "/usr/share/doc/bash/copyright"));
        assert!(m("/usr/share/doc/*", "/usr/share/doc/x"));
        assert!(!m("/usr/share/doc/*", "/usr/share/doc"));
        assert!(m("/usr/share/doc/*", "/usr/share/doc/"));
        assert!(!m("/usr/share/doc/*", "/usr/share/docs/x"));
    }

    #[test]
    fn leading_dots_and_question_marks() {
        // No FNM_PERIOD: `*` and `?` match a leading dot and `/`.
        assert!(m("/etc/*", "/etc/.pwd.lock"));
        assert!(m("/var/log/?tmp", "/var/log/wtmp"));
        assert!(m("/var/log/?tmp", "/var/log/btmp"));
        assert!(!m("/var/log/?tmp", "/var/log/tmp"));
        assert!(m("/a?b", "/a/b"));
    }

    #[test]
    fn libguestfs_var_log_patterns() {
        assert!(m("/var/log/*.log*", "/var/log/dpkg.log"));
        assert!(m("/var/log/*.log*", "/var/log/apt/term.log.1.gz"));
        assert!(m("/var/log/*/*.gz", "/var/log/apt/eipp.log.xz/x.gz"));
        assert!(!m("/var/log/*.gz", "/var/log/syslog"));
        assert!(m("/var/log/syslog*", "/var/log/syslog"));
        assert!(m("/lib/modules/*", "/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko"));
        assert!(!m("/lib/modules/*", "/usr/lib/modules/6.1/x"));
    }

    #[test]
    fn multiple_stars_backtrack() {
        assert!(m("*a*b*c", "xxaxxbxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxxbxxcd"));
        assert!(m("**", ""));
        assert!(m("*", ""));
        assert!(!m("?", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn brackets() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[!abc]", "d"));
        assert!(m("[^abc]", "d"));
        assert!(!m("[!abc]", "a"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[a-]", "-"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[[:digit:]]*", "7up"));
        assert!(!m("[[:digit:]]*", "up"));
        assert!(m("[/]", "/"), "no FNM_PATHNAME: a class may match /");
        // Unterminated bracket is literal.
        assert!(m("a[b", "a[b"));
        assert!(!m("a[b", "ab"));
    }

    #[test]
    fn backslash_is_literal_with_noescape() {
        assert!(m("a\\*", "a\\xyz"));
        assert!(!m("a\\*", "a*"[..1].as_ref()));
        assert!(m("\\[", "\\["));
    }
}
