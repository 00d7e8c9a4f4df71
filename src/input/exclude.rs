//! [`ExcludePattern`]: one excludefiles line, matched with
//! [`crate::fnmatch::fnmatch`] (supermin's `fnmatch(FNM_NOESCAPE)`: `*`
//! crosses `/`).

use crate::fnmatch::fnmatch;

/// One excludefiles line: a `-` marker followed by an `fnmatch` pattern.
///
/// Invariant: the stored pattern is the line without its leading `-`,
/// byte for byte (no trimming, as supermin).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExcludePattern {
    pattern: String,
}

impl ExcludePattern {
    /// Parse one excludefiles line. Returns `None` when the line does not
    /// start with `-` (supermin's fatal "excludefiles line does not start
    /// with '-'"; the caller reports it with file and line number).
    pub(crate) fn parse(line: &str) -> Option<ExcludePattern> {
        line.strip_prefix('-').map(|p| ExcludePattern { pattern: p.to_owned() })
    }

    /// True when `path` (an absolute appliance path, as bytes) matches, with
    /// `fnmatch(FNM_NOESCAPE)` semantics: `*` crosses `/`.
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        fnmatch(self.pattern.as_bytes(), path)
    }

    /// The pattern text, without the leading `-`.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_pattern_parse() {
        let p = ExcludePattern::parse("-/boot/*").unwrap();
        assert_eq!(p.as_str(), "/boot/*");
        assert!(p.matches(b"/boot/vmlinuz"));
        assert!(ExcludePattern::parse("/boot/*").is_none());
        assert!(ExcludePattern::parse("").is_none());
        // Verbatim: a trailing space is part of the pattern.
        let p = ExcludePattern::parse("-/x ").unwrap();
        assert!(!p.matches(b"/x"));
        assert!(p.matches(b"/x "));
    }
}
