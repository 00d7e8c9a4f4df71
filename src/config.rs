//! The configuration file (`/etc/guestfs-appliance/config.toml`).
//!
//! Every command works without it: [`Config::default`] holds the defaults
//! the README states. `--config FILE` or `$GUESTFS_APPLIANCE_CONFIG` names
//! another file; a file named that way must exist, while the default path
//! may be absent. Unknown keys and wrong types are errors naming the key and
//! the line, so a typo never silently falls back to a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/guestfs-appliance/config.toml";

/// Environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "GUESTFS_APPLIANCE_CONFIG";

/// Default fixed appliance directory.
pub(crate) const DEFAULT_APPLIANCE_DIR: &str = "/usr/local/lib/guestfs/appliance";

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The named file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid for us.
    #[error("config file {path}, line {line}: {message}; see the README for the keys")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// What to build and where.
    pub(crate) appliance: ApplianceConfig,
    /// Thresholds for `status`.
    pub(crate) health: HealthConfig,
    /// libguestfs per-user cache handling.
    pub(crate) cache: CacheConfig,
    /// Where the configuration came from (`None`: defaults only).
    #[serde(skip)]
    pub(crate) source: Option<PathBuf>,
}

/// `[appliance]`: the fixed appliance.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ApplianceConfig {
    /// The fixed appliance directory (`LIBGUESTFS_PATH`).
    pub(crate) dir: PathBuf,
    /// supermin.d inputs; empty = libguestfs's installed one.
    pub(crate) inputs: Vec<PathBuf>,
    /// Root image size, supermin syntax.
    pub(crate) size: String,
    /// Packages added to those the inputs name.
    pub(crate) extra_packages: Vec<String>,
    /// Extra excludefiles patterns (fnmatch, `*` crosses `/`), without the
    /// leading `-` of the supermin file format.
    pub(crate) extra_excludes: Vec<String>,
    /// Missing packages are errors.
    pub(crate) strict: bool,
    /// What the `kernel` file is: `auto`, `uncompressed` or `copy`.
    pub(crate) kernel_format: crate::manifest::KernelFormat,
}

impl Default for ApplianceConfig {
    fn default() -> Self {
        ApplianceConfig {
            dir: PathBuf::from(DEFAULT_APPLIANCE_DIR),
            inputs: Vec::new(),
            size: "4G".into(),
            extra_packages: Vec::new(),
            extra_excludes: Vec::new(),
            strict: false,
            kernel_format: crate::manifest::KernelFormat::Auto,
        }
    }
}

/// `[health]`: warning thresholds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HealthConfig {
    /// Warn when a location has less free space than the appliance needs
    /// times this factor.
    pub(crate) space_margin: f64,
    /// Warn below this many free inodes.
    pub(crate) min_free_inodes: u64,
    /// `--probe`: warn below this write speed (MB/s).
    pub(crate) min_write_mb_per_s: f64,
    /// `--probe`: warn above this fsync latency (ms).
    pub(crate) max_fsync_ms: f64,
    /// Warn when the appliance is older than this many days.
    pub(crate) max_appliance_age_days: u64,
    /// `--probe`: bytes written per location (at most 64 MiB).
    pub(crate) probe_bytes: u64,
    /// `--probe`: seconds to wait for a test boot under TCG (emulation).
    pub(crate) probe_boot_timeout_s: u64,
    /// `--probe`: seconds to wait for a test boot under KVM (a working KVM
    /// reaches the appliance's /init in a second or two).
    pub(crate) probe_kvm_timeout_s: u64,
    /// Warn when a test boot under KVM takes longer than this many seconds.
    pub(crate) max_kvm_boot_s: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            space_margin: 1.5,
            min_free_inodes: 20_000,
            min_write_mb_per_s: 100.0,
            max_fsync_ms: 50.0,
            max_appliance_age_days: 90,
            probe_bytes: 32 << 20,
            probe_boot_timeout_s: 120,
            probe_kvm_timeout_s: 20,
            max_kvm_boot_s: 10.0,
        }
    }
}

/// Longest wait a `--probe` boot timeout may ask for (a day); larger
/// values would overflow deadlines.
const MAX_TIMEOUT_S: u64 = 86_400;

impl HealthConfig {
    /// The first key whose value makes no sense, with the rule it breaks.
    /// TOML accepts `nan`, `inf` and negative floats, and serde any u64:
    /// each key is checked against what its probe can use.
    fn invalid_key(&self) -> Option<(&'static str, String)> {
        let finite_at_least = |v: f64, min: f64| v.is_finite() && v >= min;
        let finite_above = |v: f64, min: f64| v.is_finite() && v > min;
        let checks: [(&'static str, bool, String); 9] = [
            (
                "space_margin",
                finite_at_least(self.space_margin, 1.0),
                "a number of at least 1 (a factor)".into(),
            ),
            ("min_free_inodes", true, String::new()),
            (
                "min_write_mb_per_s",
                finite_at_least(self.min_write_mb_per_s, 0.0),
                "a number of at least 0 (MB/s)".into(),
            ),
            ("max_fsync_ms", finite_above(self.max_fsync_ms, 0.0), "a number above 0 (milliseconds)".into()),
            (
                "max_appliance_age_days",
                (1..=36_500).contains(&self.max_appliance_age_days),
                "a whole number of days from 1 to 36500".into(),
            ),
            (
                "probe_bytes",
                (1 << 20..=64 << 20).contains(&self.probe_bytes),
                "from 1048576 (1 MiB) to 67108864 (64 MiB)".into(),
            ),
            (
                "probe_boot_timeout_s",
                (1..=MAX_TIMEOUT_S).contains(&self.probe_boot_timeout_s),
                format!("a whole number of seconds from 1 to {MAX_TIMEOUT_S}"),
            ),
            (
                "probe_kvm_timeout_s",
                (1..=MAX_TIMEOUT_S).contains(&self.probe_kvm_timeout_s),
                format!("a whole number of seconds from 1 to {MAX_TIMEOUT_S}"),
            ),
            ("max_kvm_boot_s", finite_above(self.max_kvm_boot_s, 0.0), "a number above 0 (seconds)".into()),
        ];
        checks.into_iter().find(|(_, ok, _)| !ok).map(|(key, _, rule)| (key, rule))
    }
}

/// `[cache]`: libguestfs per-user caches.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CacheConfig {
    /// Extra directories to look for `.guestfs-UID` caches in.
    pub(crate) extra_dirs: Vec<PathBuf>,
}

impl Config {
    /// Load the configuration: `explicit` (from `--config`), else
    /// `$GUESTFS_APPLIANCE_CONFIG`, else the default path if it exists, else
    /// the defaults. An empty `$GUESTFS_APPLIANCE_CONFIG` counts as unset
    /// (as an empty `SOURCE_DATE_EPOCH` does): `VAR= cmd` is how shells
    /// clear a variable for one command.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
        match named {
            Some(path) => Self::from_file(&path),
            None => {
                let path = Path::new(DEFAULT_CONFIG_PATH);
                if path.exists() {
                    Self::from_file(path)
                } else {
                    Ok(Config::default())
                }
            }
        }
    }

    /// Parse one file.
    pub(crate) fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::bounded::read_to_string(path, crate::bounded::TEXT_MAX)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, path)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parse text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line =
                e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        if let Some((key, rule)) = config.health.invalid_key() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, key),
                message: format!("health.{key} must be {rule}"),
            });
        }
        for pattern in &config.appliance.extra_excludes {
            if pattern.is_empty() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    line: line_of(text, "extra_excludes"),
                    message: "appliance.extra_excludes must not contain an empty pattern".into(),
                });
            }
        }
        Ok(config)
    }
}

/// 1-based line of the first line mentioning `key` (0 if none).
fn line_of(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.contains(key)).map(|i| i + 1).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/x.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(Config::default().appliance.dir, PathBuf::from(DEFAULT_APPLIANCE_DIR));
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "[appliance]\ndir = \"/dev/shm/appliance\"\nsize = \"2G\"\nextra_packages = [\"vim-tiny\"]\n\
             [health]\nmin_write_mb_per_s = 10.5\n",
        )
        .unwrap();
        assert_eq!(c.appliance.dir, PathBuf::from("/dev/shm/appliance"));
        assert_eq!(c.appliance.extra_packages, vec!["vim-tiny".to_string()]);
        assert_eq!(c.health.min_write_mb_per_s, 10.5);
        assert_eq!(c.health.max_fsync_ms, HealthConfig::default().max_fsync_ms);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[appliance]\nsize = \"2G\"\ndirr = \"/x\"\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("dirr"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("[health]\n\nmin_free_inodes = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("min_free_inodes") || err.contains("invalid type"), "{err}");
    }

    #[test]
    fn oversized_probe_is_refused() {
        let err = parse("[health]\nprobe_bytes = 100000000\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("probe_bytes"), "{err}");
    }

    /// Issue 8, item 13: every numeric key is checked; NaN, infinities and
    /// negative numbers are refused naming the key, the line and the file.
    #[test]
    fn issue8_numeric_keys_are_validated() {
        let bad = [
            "space_margin = nan",
            "space_margin = -1.0",
            "space_margin = 0.5",
            "space_margin = inf",
            "min_write_mb_per_s = -3.0",
            "min_write_mb_per_s = nan",
            "max_fsync_ms = 0.0",
            "max_fsync_ms = -inf",
            "max_appliance_age_days = 0",
            "max_appliance_age_days = 9223372036854775807",
            "probe_bytes = 0",
            "probe_boot_timeout_s = 0",
            "probe_boot_timeout_s = 9223372036854775807",
            "probe_kvm_timeout_s = 0",
            "max_kvm_boot_s = nan",
        ];
        for line in bad {
            let key = line.split(' ').next().unwrap();
            let err = parse(&format!("[health]\n\n{line}\n")).unwrap_err().to_string();
            assert!(
                err.contains("/etc/x.toml")
                    && err.contains("line 3")
                    && err.contains(&format!("health.{key}")),
                "{line}: {err}"
            );
        }
        let ok =
            parse("[health]\nspace_margin = 1.0\nmin_write_mb_per_s = 0.0\nprobe_boot_timeout_s = 86400\n");
        assert!(ok.is_ok(), "{ok:?}");
        // The negative integer is a type error from the parser, also named.
        let err = parse("[health]\nmin_free_inodes = -1\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn named_file_must_exist() {
        let err = Config::load(Some(Path::new("/nonexistent/config.toml"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/config.toml"), "{err}");
    }
}
