//! Settings: defaults < `custody.toml` in the custody home < `CUSTODY_*`
//! environment < flags. (clap applies environment and flags; this module the
//! file and the defaults.)

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::evidence::pipeline::{DEFAULT_FRAME_SIZE, DEFAULT_LEVEL, PipelineOptions};
use crate::inflate::InflateLimits;
// The stores' own settings and the URL redaction, defined beside the store
// code; re-exported so the configuration reads as one place.
pub use crate::store::redact_url;
pub use crate::store::settings::{AzureSettings, S3Settings};

pub const CONFIG_FILE: &str = "custody.toml";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no custody home: set CUSTODY_HOME or pass --home (no home directory was found)")]
    NoHome,
    #[error("{key} = {value} in {path} is out of range: {reason}")]
    Range {
        path: PathBuf,
        key: &'static str,
        value: i64,
        reason: &'static str,
    },
}

/// What `custody.toml` may hold. Unknown keys are refused so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    store: Option<String>,
    compression_level: Option<i32>,
    frame_size_mib: Option<u32>,
    operator: Option<String>,
    #[serde(default)]
    s3: S3Settings,
    #[serde(default)]
    azure: AzureSettings,
    #[serde(default)]
    decompress: DecompressSettings,
}

/// `[decompress]` in custody.toml: how far compressed log input (gzip) may
/// expand when it is parsed. Past either limit the rest of that file is not
/// read, and the load reports it as a problem naming the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DecompressSettings {
    /// MiB one file (or bundle member) may expand to.
    max_mib: u64,
    /// Expanded bytes per compressed byte, for files past 64 MiB expanded.
    max_ratio: u64,
}

impl Default for DecompressSettings {
    fn default() -> Self {
        Self {
            max_mib: InflateLimits::DEFAULT.max_bytes >> 20,
            max_ratio: InflateLimits::DEFAULT.max_ratio,
        }
    }
}

#[derive(Clone)]
pub struct Config {
    /// Holds the config file, keys, the local ledger and, by default, the local evidence store.
    pub home: PathBuf,
    /// Evidence store URL.
    pub store: String,
    pub pipeline: PipelineOptions,
    /// Who is acting, recorded with each action.
    pub operator: String,
    pub s3: S3Settings,
    pub azure: AzureSettings,
    /// How far gzip log input may expand when parsed (`[decompress]`).
    pub inflate: InflateLimits,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("home", &self.home)
            .field("store", &redact_url(&self.store))
            .field("pipeline", &self.pipeline)
            .field("operator", &self.operator)
            .field("inflate", &self.inflate)
            .finish()
    }
}

/// The platform's data directory for custody (`~/.local/share/custody` on Linux).
pub fn default_home() -> Result<PathBuf, ConfigError> {
    directories::ProjectDirs::from("", "", "custody")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(ConfigError::NoHome)
}

impl Config {
    /// Resolves settings. `home` and `store` are what flags or the environment gave, if anything.
    pub fn load(home: Option<PathBuf>, store: Option<String>) -> Result<Self, ConfigError> {
        let home = match home {
            Some(h) => h,
            None => default_home()?,
        };
        let home = std::path::absolute(&home).unwrap_or(home);
        let path = home.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.message().to_owned(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let mut pipeline = PipelineOptions {
            level: file.compression_level.unwrap_or(DEFAULT_LEVEL),
            ..PipelineOptions::default()
        };
        if !(1..=19).contains(&pipeline.level) {
            return Err(ConfigError::Range {
                path,
                key: "compression_level",
                value: i64::from(pipeline.level),
                reason: "zstd levels 1 to 19",
            });
        }
        if !matches!(
            file.s3.object_lock.as_str(),
            "compliance" | "governance" | "off"
        ) {
            return Err(ConfigError::Parse {
                path,
                message: format!(
                    "s3.object_lock = {:?}: expected compliance, governance or off",
                    file.s3.object_lock
                ),
            });
        }
        if !(1..=20).contains(&file.s3.max_attempts) {
            return Err(ConfigError::Range {
                path,
                key: "s3.max_attempts",
                value: i64::from(file.s3.max_attempts),
                reason: "1 to 20 attempts",
            });
        }
        if let Some(mib) = file.frame_size_mib {
            if !(1..=1024).contains(&mib) {
                return Err(ConfigError::Range {
                    path,
                    key: "frame_size_mib",
                    value: i64::from(mib),
                    reason: "1 to 1024 MiB",
                });
            }
            pipeline.frame_size = mib as usize * (1 << 20);
        } else {
            pipeline.frame_size = DEFAULT_FRAME_SIZE;
        }
        // 64 GiB: past what a responder's machine holds in memory; a ratio
        // over 10000 is no limit at all (deflate stops near 1032:1).
        if !(1..=64 << 10).contains(&file.decompress.max_mib) {
            return Err(ConfigError::Range {
                path,
                key: "decompress.max_mib",
                value: i64::try_from(file.decompress.max_mib).unwrap_or(i64::MAX),
                reason: "1 to 65536 MiB",
            });
        }
        if !(1..=10_000).contains(&file.decompress.max_ratio) {
            return Err(ConfigError::Range {
                path,
                key: "decompress.max_ratio",
                value: i64::try_from(file.decompress.max_ratio).unwrap_or(i64::MAX),
                reason: "1 to 10000",
            });
        }
        let inflate = InflateLimits {
            max_bytes: file.decompress.max_mib << 20,
            max_ratio: file.decompress.max_ratio,
        };
        let store = store.or(file.store).unwrap_or_else(|| default_store(&home));
        let operator = file
            .operator
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Self {
            home,
            store,
            pipeline,
            s3: file.s3.clone(),
            azure: file.azure.clone(),
            operator,
            inflate,
        })
    }
}

fn default_store(home: &Path) -> String {
    let dir = home.join("evidence");
    url::Url::from_file_path(&dir)
        .map(|u| u.to_string())
        .unwrap_or_else(|()| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_explicit() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config::load(Some(dir.path().to_path_buf()), None).expect("defaults");
        assert!(
            c.store.starts_with("file://") && c.store.ends_with("/evidence"),
            "{}",
            c.store
        );
        assert_eq!(c.pipeline.level, DEFAULT_LEVEL);

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "store = \"file:///srv/evidence\"\ncompression_level = 3\n",
        )
        .expect("write");
        let c = Config::load(Some(dir.path().to_path_buf()), None).expect("file");
        assert_eq!(c.store, "file:///srv/evidence");
        assert_eq!(c.pipeline.level, 3);

        let c = Config::load(Some(dir.path().to_path_buf()), Some("file:///flag".into()))
            .expect("flag");
        assert_eq!(c.store, "file:///flag");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join(CONFIG_FILE), "stroe = \"x\"\n").expect("write");
        let err = Config::load(Some(dir.path().to_path_buf()), None).expect_err("typo");
        let text = err.to_string();
        assert!(
            text.contains("custody.toml") && text.contains("stroe"),
            "{text}"
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "compression_level = 40\n").expect("write");
        assert!(Config::load(Some(dir.path().to_path_buf()), None).is_err());
    }

    #[test]
    fn p1_decompression_limits_come_from_the_file_and_are_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config::load(Some(dir.path().to_path_buf()), None).expect("defaults");
        assert_eq!(c.inflate, InflateLimits::DEFAULT);
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[decompress]\nmax_mib = 256\nmax_ratio = 50\n",
        )
        .expect("write");
        let c = Config::load(Some(dir.path().to_path_buf()), None).expect("file");
        assert_eq!(
            c.inflate,
            InflateLimits {
                max_bytes: 256 << 20,
                max_ratio: 50
            }
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[decompress]\nmax_ratio = 0\n",
        )
        .expect("write");
        let err = Config::load(Some(dir.path().to_path_buf()), None).expect_err("no ratio");
        assert!(err.to_string().contains("decompress.max_ratio"), "{err}");
    }

    #[test]
    fn debug_redacts_secrets_in_store_urls() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config::load(
            Some(dir.path().to_path_buf()),
            Some("https://acct.blob.core.windows.net/evidence?sv=2024&sig=SECRETSIG".into()),
        )
        .expect("load");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRETSIG"), "{shown}");
        assert!(redact_url("https://user:pw@host/x").contains("host/x"));
        assert!(!redact_url("https://user:pw@host/x").contains("pw"));
    }
}
