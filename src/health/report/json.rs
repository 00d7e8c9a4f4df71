//! The JSON format: the [`Report`] itself, serialised (its layout is
//! documented in docs/status-schema.json and versioned by
//! `health::SCHEMA_VERSION`).

use crate::health::Report;

/// The JSON report (pretty, one trailing newline).
///
/// Errors: only if serialisation fails, which plain data cannot.
pub(crate) fn json(r: &Report) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(r)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::tests::report;

    #[test]
    fn json_has_version_and_sections() {
        let r = report(|_| {});
        let v: serde_json::Value = serde_json::from_str(&json(&r).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "ok");
        assert!(v["locations"].is_array() && v["appliance"].is_object() && v["virtualization"].is_object());
    }
}
