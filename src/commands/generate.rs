//! `generate` (hidden): files the packages ship that come from our own
//! definitions, so they cannot drift from the code — man pages and shell
//! completions from the clap definitions (`clap_mangen`, `clap_complete`),
//! the conffile from [`Config::default`], and the profile.d file from
//! `commands::env`'s renderer. packaging/build calls it with the binary it
//! packages; nothing generated is committed.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, GenerateArgs, GenerateWhat, MakeFixedCli};
use crate::config::{Config, DEFAULT_APPLIANCE_DIR, DEFAULT_CONFIG_PATH};
use crate::printer::Printer;

/// One comment per configuration key, `section.key` → text; a test checks
/// every key of [`Config`] has one, so a new key cannot ship unexplained.
const KEY_COMMENTS: &[(&str, &str)] = &[
    ("appliance.dir", "where build, check, build --if-needed, watch and status look"),
    ("appliance.inputs", "supermin.d paths; [] = libguestfs's installed one"),
    ("appliance.size", "root image size (supermin syntax: 4G, 1.5G, 800M)"),
    ("appliance.extra_packages", "added to the inputs' package lists"),
    ("appliance.extra_excludes", "extra excludefiles patterns, e.g. \"/usr/share/zoneinfo/*\""),
    ("appliance.strict", "missing packages are errors"),
    ("appliance.kernel_format", "auto, uncompressed (vmlinux, boots faster) or copy (supermin's)"),
    ("health.space_margin", "warn when free space < appliance size x this"),
    ("health.min_free_inodes", "warn below this many free inodes"),
    ("health.min_write_mb_per_s", "status --probe: warn below this write speed"),
    ("health.max_fsync_ms", "status --probe: warn above this fsync latency"),
    ("health.max_appliance_age_days", "warn when the appliance is older"),
    ("health.probe_bytes", "status --probe: bytes written per location (at most 64 MiB)"),
    ("health.probe_boot_timeout_s", "status --probe: seconds to wait for a test boot under TCG"),
    ("health.probe_kvm_timeout_s", "status --probe: seconds to wait for a test boot under KVM"),
    ("health.max_kvm_boot_s", "warn when a KVM test boot takes longer"),
    ("cache.extra_dirs", "more places to look for .guestfs-UID caches"),
];

/// Run `generate`.
pub fn run(args: &GenerateArgs, _config: &Config, printer: &Printer) -> Result<()> {
    match &args.what {
        GenerateWhat::Man { dir } => {
            create_dir(dir)?;
            for cmd in [Cli::command(), MakeFixedCli::command()] {
                clap_mangen::generate_to(cmd, dir)
                    .with_context(|| format!("writing man pages into {}", dir.display()))?;
            }
            printer.info(format!("wrote man pages into {}", dir.display()));
        }
        GenerateWhat::Completions { dir } => {
            create_dir(dir)?;
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                for mut cmd in [Cli::command(), MakeFixedCli::command()] {
                    let name = cmd.get_name().to_string();
                    clap_complete::generate_to(shell, &mut cmd, name, dir)
                        .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
                }
            }
            printer.info(format!("wrote completions into {}", dir.display()));
        }
        GenerateWhat::Config { appliance_dir } => {
            crate::stdout::write(config_file(appliance_dir.as_deref())?).context("writing to stdout")?
        }
        GenerateWhat::Profile { appliance_dir } => {
            let plan = crate::commands::env::EnvPlan {
                appliance_dir: appliance_dir.display().to_string(),
                ..Default::default()
            };
            crate::stdout::write(crate::commands::env::render_profile(&plan)).context("writing to stdout")?
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The packaged configuration file: every key of [`Config::default`],
/// commented out at its default value, with one line saying what it does.
/// `appliance_dir`, when given, is the one key set: the directory the
/// package owns (the built-in default is under /usr/local, which packages
/// must leave alone).
pub(crate) fn config_file(appliance_dir: Option<&Path>) -> Result<String> {
    let defaults = toml::Value::try_from(Config::default()).context("serializing the default config")?;
    let mut out = format!(
        "# {DEFAULT_CONFIG_PATH}: configuration of guestfs-appliance {}.\n\
         # Every key is shown at its default, commented out; uncomment and edit to\n\
         # change one. Unknown keys are errors. See the README, \"Configuration\".\n",
        env!("CARGO_PKG_VERSION")
    );
    let sections = defaults.as_table().context("the default config is not a table")?;
    for (section, keys) in sections {
        out.push_str(&format!("\n[{section}]\n"));
        for (key, value) in keys.as_table().context("a config section is not a table")? {
            let comment = comment_for(section, key)?;
            let shown = toml_value(value);
            match (section.as_str(), key.as_str(), appliance_dir) {
                ("appliance", "dir", Some(dir)) => {
                    let dir = toml_value(&toml::Value::String(dir.display().to_string()));
                    out.push_str(&format!(
                        "# {comment}.\n# This package's appliance directory (without this file: {DEFAULT_APPLIANCE_DIR}).\n\
                         dir = {dir}\n"
                    ));
                }
                _ => out.push_str(&format!("# {comment}.\n#{key} = {shown}\n")),
            }
        }
    }
    Ok(out)
}

fn comment_for(section: &str, key: &str) -> Result<&'static str> {
    let name = format!("{section}.{key}");
    KEY_COMMENTS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, c)| *c)
        .with_context(|| format!("config key {name} has no comment in commands/generate.rs KEY_COMMENTS"))
}

/// One TOML value as it appears after `key = `.
fn toml_value(value: &toml::Value) -> String {
    match value {
        // Arrays of the defaults are empty; show them inline.
        toml::Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uncomment every `#key = value` line: the result must parse to the
    /// defaults (the file shows the true defaults, every key is present).
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn packaged_config_sets_only_the_appliance_dir_and_shows_true_defaults() {
        let dir = Path::new("/var/lib/guestfs-appliance/appliance");
        let text = config_file(Some(dir)).unwrap();
        let as_is = Config::parse(&text, Path::new("c.toml")).unwrap();
        let mut expected = Config::default();
        expected.appliance.dir = dir.to_path_buf();
        assert_eq!(as_is, expected, "{text}");
        assert_eq!(Config::parse(&uncommented(&text), Path::new("c.toml")).unwrap(), expected, "{text}");
        // Every key appears once, commented (dir set).
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = 0;
        for (section, table) in defaults.as_table().unwrap() {
            assert!(text.contains(&format!("[{section}]")), "{section}");
            for key in table.as_table().unwrap().keys() {
                keys += 1;
                let shown = text.lines().filter(|l| l.starts_with(&format!("#{key} = "))).count()
                    + text.lines().filter(|l| l.starts_with(&format!("{key} = "))).count();
                assert_eq!(shown, 1, "{section}.{key} in:\n{text}");
            }
        }
        assert_eq!(keys, KEY_COMMENTS.len(), "a KEY_COMMENTS entry names no config key");
    }

    #[test]
    fn config_without_a_package_dir_is_all_defaults() {
        let text = config_file(None).unwrap();
        assert_eq!(Config::parse(&text, Path::new("c.toml")).unwrap(), Config::default());
        assert_eq!(Config::parse(&uncommented(&text), Path::new("c.toml")).unwrap(), Config::default());
    }
}
