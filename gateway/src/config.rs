//! `gateway.toml`: one city's gateway configuration, with an environment
//! override for every setting (`TONGBAN_` + the dotted path in upper case with
//! `_`, e.g. `TONGBAN_LEDGER_BLOCK_INTERVAL_MS`; lists comma-separated).
//! Relative paths are resolved against the config file's folder.
//!
//! ```toml
//! city = "nanjing"
//! registry = "yangtze-delta.toml"
//! registry_sha256 = "<64 hex>"
//! data_dir = "data/nanjing"
//! http_listen = "127.0.0.1:8080"
//!
//! [keys]
//! gateway = "keys/nanjing.gateway.ed25519.key"
//! endorsers = ["keys/nanjing-endorser-1.ed25519.key", "…"]
//! subject = "keys/nanjing.subject.key"
//! data = "keys/nanjing.data.key"        # record values at rest (README: the data key)
//! data_retired = []                     # earlier data keys, read only
//!
//! [ledger]            # optional
//! block_interval_ms = 2
//! max_block_txs = 8192
//! queue = 4096
//! index_memtable_entries = 2097152
//! min_free_bytes = 134217728          # below this, writes answer 507 store.full
//!
//! [relay]             # optional: without it, no other city is reached
//! listen = ["/ip4/0.0.0.0/tcp/4102"]
//! peers = { "shanghai.gateway" = ["/ip4/10.0.0.1/tcp/4101"] }  # overrides registry addresses
//! sync_interval_ms = 500
//! request_timeout_ms = 10000
//!
//! [http]              # optional (defaults shown)
//! max_body_bytes = 16777216
//! clock_skew_ms = 30000
//! max_connections = 4096              # at most this many at once (fitted under `ulimit -n`)
//! max_connections_per_address = 256   # per client IP
//! header_read_timeout_ms = 10000      # whole request head
//! body_read_timeout_ms = 60000        # whole request body
//! idle_timeout_ms = 30000             # keep-alive wait; stalled response writes
//! shutdown_grace_ms = 10000           # after SIGTERM, then open connections are dropped
//!
//! [webhooks]          # optional: push inbox items (TONGBAN_WEBHOOKS="member=url,…")
//! "nanjing.electricity" = "http://10.0.0.7:9000/tongban"
//! ```

use std::path::{Path, PathBuf};

use proofs::Hash;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The city this gateway serves (a registry city id).
    pub city: String,
    /// The registry file.
    pub registry: PathBuf,
    /// Its pinned SHA-256.
    pub registry_sha256: Hash,
    /// Where the ledger lives.
    pub data_dir: PathBuf,
    /// HTTP listen address, e.g. `127.0.0.1:8080` (port 0 picks one).
    pub http_listen: String,
    /// Key files.
    pub keys: Keys,
    /// Block cutting.
    #[serde(default)]
    pub ledger: LedgerSettings,
    /// HTTP limits.
    #[serde(default)]
    pub http: HttpSettings,
    /// libp2p between gateways.
    #[serde(default)]
    pub relay: Option<RelaySettings>,
    /// Deadlines and retries of applications.
    #[serde(default)]
    pub applications: regions::application::Timing,
    /// Webhook push of inbox items: recipient member id → `http://` URL.
    #[serde(default)]
    pub webhooks: std::collections::BTreeMap<String, String>,
}

/// libp2p settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// Listen addresses (libp2p multiaddrs).
    pub listen: Vec<String>,
    /// Addresses of peers by registry id, replacing the registry's.
    pub peers: std::collections::BTreeMap<String, Vec<String>>,
    /// How often other chains' headers are pulled (ms).
    pub sync_interval_ms: u64,
    /// Time for one attempt of a request to another gateway (ms).
    pub request_timeout_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            listen: Vec::new(),
            peers: Default::default(),
            sync_interval_ms: 500,
            request_timeout_ms: 10_000,
        }
    }
}

/// Key file paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// The gateway's Ed25519 key (its identity).
    pub gateway: PathBuf,
    /// Endorser keys held locally (embedded default): at least the chain's threshold.
    pub endorsers: Vec<PathBuf>,
    /// The city's subject-reference key.
    pub subject: PathBuf,
    /// HPKE keys of the departments this gateway answers matches for, and of
    /// the service centres it takes applications for.
    #[serde(default)]
    pub custody: Vec<PathBuf>,
    /// Ed25519 keys of the service centres this gateway takes applications for.
    #[serde(default)]
    pub centres: Vec<PathBuf>,
    /// The data key: record values are encrypted at rest under it.
    pub data: PathBuf,
    /// Earlier data keys, kept to read values written before a rotation.
    #[serde(default)]
    pub data_retired: Vec<PathBuf>,
}

/// Block cutting.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Longest wait (ms) before a block is cut once a write is pending.
    pub block_interval_ms: u64,
    /// Most transactions per block.
    pub max_block_txs: usize,
    /// Submissions that may wait for the writer.
    pub queue: usize,
    /// Secondary-index entries held in memory before they are written as a
    /// sorted run (about 120 bytes of memory each; `docs/performance.md`).
    pub index_memtable_entries: usize,
    /// Free bytes the data directory's file system must keep: a block that
    /// would start below this is refused (`store.full`) without writing
    /// anything, and writes resume once space is freed.
    pub min_free_bytes: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            block_interval_ms: 2,
            max_block_txs: 8192,
            queue: 4096,
            index_memtable_entries: crate::index::IndexConfig::default().memtable_entries,
            min_free_bytes: 128 << 20,
        }
    }
}

/// HTTP limits (`gateway/src/http_serve.rs` says how each is applied).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest request body (bytes); larger ones are refused before they are read.
    pub max_body_bytes: usize,
    /// Accepted clock skew for signed HTTP requests (ms). Match requests
    /// use the protocol's fixed 30 s (`docs/encoding.md` sections 11, 13).
    pub clock_skew_ms: u64,
    /// Connections served at once; at the cap a new connection waits up to
    /// 500 ms for a slot, then is closed. Lowered at start to fit under the
    /// open-file limit (less 256 descriptors for the store and the relay).
    pub max_connections: usize,
    /// Connections at once from one client address (IP); the next is closed.
    pub max_connections_per_address: usize,
    /// Time for a whole request head, from accept or from the first byte
    /// after an answer (ms); then 408 and close.
    pub header_read_timeout_ms: u64,
    /// Time for a whole request body, from the end of its head (ms); then
    /// 408 and close.
    pub body_read_timeout_ms: u64,
    /// Time a kept-alive connection may wait for its next request, and a
    /// response write may make no progress (ms); then close.
    pub idle_timeout_ms: u64,
    /// Time connections get to finish after SIGTERM/SIGINT (ms); then the
    /// connections still open are dropped and the ledger writer is drained.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 16 * 1024 * 1024,
            clock_skew_ms: 30_000,
            max_connections: 4096,
            max_connections_per_address: 256,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a setting of the wrong type or unknown.
    #[error("config {path}: {problem}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// An environment override could not be used.
    #[error("environment variable {var}: {problem}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        problem: String,
    },
    /// A setting is out of range.
    #[error("config: `{setting}` {problem}")]
    Invalid {
        /// Which setting.
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Each overridable setting: dotted path and its type.
const SETTINGS: &[(&str, Kind)] = &[
    ("city", Kind::Str),
    ("registry", Kind::Str),
    ("registry_sha256", Kind::Str),
    ("data_dir", Kind::Str),
    ("http_listen", Kind::Str),
    ("keys.gateway", Kind::Str),
    ("keys.endorsers", Kind::List),
    ("keys.subject", Kind::Str),
    ("keys.custody", Kind::List),
    ("keys.centres", Kind::List),
    ("keys.data", Kind::Str),
    ("keys.data_retired", Kind::List),
    ("applications.evidence_deadline_ms", Kind::Int),
    ("applications.service_deadline_ms", Kind::Int),
    ("relay.listen", Kind::List),
    ("relay.sync_interval_ms", Kind::Int),
    ("relay.request_timeout_ms", Kind::Int),
    ("ledger.block_interval_ms", Kind::Int),
    ("ledger.max_block_txs", Kind::Int),
    ("ledger.queue", Kind::Int),
    ("ledger.index_memtable_entries", Kind::Int),
    ("ledger.min_free_bytes", Kind::Int),
    ("http.max_body_bytes", Kind::Int),
    ("http.clock_skew_ms", Kind::Int),
    ("http.max_connections", Kind::Int),
    ("http.max_connections_per_address", Kind::Int),
    ("http.header_read_timeout_ms", Kind::Int),
    ("http.body_read_timeout_ms", Kind::Int),
    ("http.idle_timeout_ms", Kind::Int),
    ("http.shutdown_grace_ms", Kind::Int),
    ("webhooks", Kind::Map),
];

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    List,
    Map,
}

/// The environment variable for a dotted setting path.
pub fn env_var(path: &str) -> String {
    format!("TONGBAN_{}", path.replace('.', "_").to_ascii_uppercase())
}

impl Config {
    /// Loads `path`, applies environment overrides from `env`, resolves paths.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: p.clone(),
                    problem: e.to_string(),
                })?;
        for (setting, kind) in SETTINGS {
            let var = env_var(setting);
            let Some(raw) = env(&var) else { continue };
            let value = match kind {
                Kind::Str => toml::Value::String(raw),
                Kind::Int => {
                    toml::Value::Integer(raw.trim().parse().map_err(|_| ConfigError::Env {
                        var: var.clone(),
                        problem: format!("`{raw}` is not an integer"),
                    })?)
                }
                Kind::Map => {
                    let mut m = toml::Table::new();
                    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or_else(|| ConfigError::Env {
                            var: var.clone(),
                            problem: format!("`{pair}` is not `member=url`"),
                        })?;
                        m.insert(
                            k.trim().to_owned(),
                            toml::Value::String(v.trim().to_owned()),
                        );
                    }
                    toml::Value::Table(m)
                }
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(|s| toml::Value::String(s.trim().to_owned()))
                        .filter(|v| v.as_str() != Some(""))
                        .collect(),
                ),
            };
            let mut t = &mut table;
            let parts: Vec<&str> = setting.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                let entry = t
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                t = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    problem: format!("`{part}` is not a table in the file"),
                })?;
            }
            t.insert(parts[parts.len() - 1].to_owned(), value);
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: p,
                    problem: e.to_string(),
                })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |q: &mut PathBuf| {
            if q.is_relative() {
                *q = base.join(&*q);
            }
        };
        fix(&mut cfg.registry);
        fix(&mut cfg.data_dir);
        fix(&mut cfg.keys.gateway);
        fix(&mut cfg.keys.subject);
        fix(&mut cfg.keys.data);
        cfg.keys.data_retired.iter_mut().for_each(fix);
        cfg.keys.endorsers.iter_mut().for_each(fix);
        cfg.keys.custody.iter_mut().for_each(fix);
        cfg.keys.centres.iter_mut().for_each(fix);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range checks on the settings (the registry-related checks happen at start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting, problem: &str| {
            Err(ConfigError::Invalid {
                setting,
                problem: problem.to_owned(),
            })
        };
        if self.ledger.block_interval_ms == 0 || self.ledger.block_interval_ms > 10_000 {
            return bad("ledger.block_interval_ms", "must be between 1 and 10000");
        }
        if self.ledger.max_block_txs == 0 || self.ledger.max_block_txs > 65_536 {
            return bad("ledger.max_block_txs", "must be between 1 and 65536");
        }
        if self.ledger.queue == 0 {
            return bad("ledger.queue", "must be at least 1");
        }
        if !(16..=1 << 24).contains(&self.ledger.index_memtable_entries) {
            return bad(
                "ledger.index_memtable_entries",
                "must be between 16 and 16777216",
            );
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes", "must be at least 1024");
        }
        if self.http.clock_skew_ms == 0 || self.http.clock_skew_ms > 600_000 {
            return bad("http.clock_skew_ms", "must be between 1 and 600000");
        }
        let h = &self.http;
        if !(1..=1_000_000).contains(&h.max_connections) {
            return bad("http.max_connections", "must be between 1 and 1000000");
        }
        if !(1..=1_000_000).contains(&h.max_connections_per_address) {
            return bad(
                "http.max_connections_per_address",
                "must be between 1 and 1000000",
            );
        }
        for (setting, v) in [
            ("http.header_read_timeout_ms", h.header_read_timeout_ms),
            ("http.body_read_timeout_ms", h.body_read_timeout_ms),
            ("http.idle_timeout_ms", h.idle_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&v) {
                return bad(setting, "must be between 100 and 3600000");
            }
        }
        if h.shutdown_grace_ms > 3_600_000 {
            return bad("http.shutdown_grace_ms", "must be at most 3600000");
        }
        if let Some(r) = &self.relay {
            if r.sync_interval_ms < 10 || r.sync_interval_ms > 3_600_000 {
                return bad("relay.sync_interval_ms", "must be between 10 and 3600000");
            }
            if r.request_timeout_ms < 100 || r.request_timeout_ms > 600_000 {
                return bad("relay.request_timeout_ms", "must be between 100 and 600000");
            }
            if r.listen.is_empty() {
                return bad("relay.listen", "must name at least one address");
            }
        }
        let t = &self.applications;
        if t.evidence_deadline_ms < 100 || t.service_deadline_ms < 100 {
            return bad("applications", "deadlines must be at least 100 ms");
        }
        if t.evidence_attempts == 0 || t.service_attempts == 0 {
            return bad("applications", "attempts must be at least 1");
        }
        for (member, url) in &self.webhooks {
            if let Err(problem) = crate::webhook::check_url(url) {
                return Err(ConfigError::Invalid {
                    setting: "webhooks",
                    problem: format!("{member}: {problem}"),
                });
            }
        }
        if self.keys.endorsers.is_empty() {
            return bad("keys.endorsers", "must list the locally held endorser keys");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
city = "nanjing"
registry = "reg.toml"
registry_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
data_dir = "data"
http_listen = "127.0.0.1:0"
[keys]
gateway = "g.key"
endorsers = ["e1.key"]
subject = "s.key"
data = "d.key"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        std::fs::write(&p, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&p, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_paths_and_overrides() {
        let c = load(BASE, &[]).unwrap();
        assert_eq!(c.ledger.block_interval_ms, 2);
        assert!(c.registry.is_absolute() && c.registry.ends_with("reg.toml"));
        let c = load(
            BASE,
            &[
                ("TONGBAN_LEDGER_BLOCK_INTERVAL_MS", "20"),
                ("TONGBAN_KEYS_ENDORSERS", "a.key, b.key"),
                ("TONGBAN_CITY", "hefei"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.ledger.block_interval_ms,
                c.keys.endorsers.len(),
                c.city.as_str()
            ),
            (20, 2, "hefei")
        );
    }

    #[test]
    fn refusals_name_the_setting() {
        let e = load(&format!("{BASE}\nextra = 1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = load(BASE, &[("TONGBAN_LEDGER_QUEUE", "many")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TONGBAN_LEDGER_QUEUE"), "{e}");
        let e = load(BASE, &[("TONGBAN_LEDGER_BLOCK_INTERVAL_MS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ledger.block_interval_ms"), "{e}");
        let e = load(
            &BASE.replace(
                "0000000000000000000000000000000000000000000000000000000000000000",
                "abc",
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("registry_sha256") || e.contains("hex"), "{e}");
    }

    #[test]
    fn http_connection_limits_defaults_overrides_and_ranges() {
        let c = load(BASE, &[]).unwrap();
        let h = c.http;
        assert_eq!(
            (
                h.max_connections,
                h.max_connections_per_address,
                h.header_read_timeout_ms,
                h.body_read_timeout_ms,
                h.idle_timeout_ms,
                h.shutdown_grace_ms
            ),
            (4096, 256, 10_000, 60_000, 30_000, 10_000)
        );
        let c = load(
            &format!("{BASE}\n[http]\nmax_connections = 100\nidle_timeout_ms = 5000\n"),
            &[
                ("TONGBAN_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "7"),
                ("TONGBAN_HTTP_SHUTDOWN_GRACE_MS", "0"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.http.max_connections,
                c.http.max_connections_per_address,
                c.http.idle_timeout_ms,
                c.http.shutdown_grace_ms
            ),
            (100, 7, 5000, 0)
        );
        for (var, value) in [
            ("TONGBAN_HTTP_MAX_CONNECTIONS", "0"),
            ("TONGBAN_HTTP_MAX_CONNECTIONS_PER_ADDRESS", "0"),
            ("TONGBAN_HTTP_HEADER_READ_TIMEOUT_MS", "10"),
            ("TONGBAN_HTTP_BODY_READ_TIMEOUT_MS", "0"),
            ("TONGBAN_HTTP_IDLE_TIMEOUT_MS", "99999999"),
            ("TONGBAN_HTTP_SHUTDOWN_GRACE_MS", "99999999"),
        ] {
            let e = load(BASE, &[(var, value)]).unwrap_err().to_string();
            let setting = var
                .strip_prefix("TONGBAN_HTTP_")
                .unwrap()
                .to_ascii_lowercase();
            assert!(e.contains(&format!("http.{setting}")), "{var}: {e}");
        }
    }

    #[test]
    fn webhooks_from_the_file_or_the_environment() {
        let c = load(
            &format!("{BASE}\n[webhooks]\n\"nanjing.gas\" = \"http://10.0.0.7:9000/hook\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(c.webhooks["nanjing.gas"], "http://10.0.0.7:9000/hook");
        let c = load(
            BASE,
            &[(
                "TONGBAN_WEBHOOKS",
                "nanjing.gas=http://a:1/x, nanjing.water = http://b:2/y",
            )],
        )
        .unwrap();
        assert_eq!(c.webhooks.len(), 2);
        assert_eq!(c.webhooks["nanjing.water"], "http://b:2/y");
        let e = load(BASE, &[("TONGBAN_WEBHOOKS", "nanjing.gas")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TONGBAN_WEBHOOKS") && e.contains("member=url"),
            "{e}"
        );
        let e = load(BASE, &[("TONGBAN_WEBHOOKS", "nanjing.gas=https://a/x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhooks") && e.contains("only http://"), "{e}");
    }
}
