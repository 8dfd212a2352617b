//! Configuration: the TOML file (`--config`) merged with command-line shorthands
//! (`--record-dn`). Unknown keys are errors, so a typo never silently disables recording.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why a configuration could not be used; one sentence a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {err}")]
    Read {
        /// The path given.
        path: String,
        /// The OS error.
        err: std::io::Error,
    },
    /// The file is not valid TOML for callrec.
    #[error("config {path} is invalid: {msg}")]
    Invalid {
        /// The path given.
        path: String,
        /// What is wrong, from the TOML parser (with line and column).
        msg: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SIP settings.
    #[serde(default)]
    pub sip: SipConfig,
    /// Recording-flow settings (resource manager address in the Request-URI, ...).
    #[serde(default)]
    pub recording: RecordingConfig,
    /// Extension DNs (agents' phones).
    #[serde(default, rename = "extension")]
    pub extensions: Vec<ExtensionDn>,
    /// Trunk DNs (carrier side: the customer).
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkDn>,
    /// Agents (Agent Login trigger: agent side while logged in).
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentConfig>,
    /// CTI settings.
    #[serde(default)]
    pub cti: CtiConfig,
}

/// `[cti]`: PrivateService message ids.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CtiConfig {
    /// PrivateMsgID that starts a recording (default 3013).
    #[serde(default = "default_start")]
    pub private_msg_start: i64,
    /// PrivateMsgID that stops it (default 3014).
    #[serde(default = "default_stop")]
    pub private_msg_stop: i64,
    /// PrivateMsgID that pauses it (default 3015).
    #[serde(default = "default_pause")]
    pub private_msg_pause: i64,
    /// PrivateMsgID that resumes it (default 3016).
    #[serde(default = "default_resume")]
    pub private_msg_resume: i64,
    /// Directories (absolute) a CTI client's `Extensions.dest` may write into, besides
    /// `--out`: a client can otherwise only name places under the output directory, so it
    /// cannot make the recorder write wherever the process may.
    #[serde(default)]
    pub dest_roots: Vec<PathBuf>,
}

fn default_start() -> i64 {
    3013
}
fn default_stop() -> i64 {
    3014
}
fn default_pause() -> i64 {
    3015
}
fn default_resume() -> i64 {
    3016
}

impl Default for CtiConfig {
    fn default() -> Self {
        CtiConfig {
            private_msg_start: default_start(),
            private_msg_stop: default_stop(),
            private_msg_pause: default_pause(),
            private_msg_resume: default_resume(),
            dest_roots: Vec::new(),
        }
    }
}

/// `[[agent]]`: an agent id; with `record = true`, calls of the DN it is logged in on are
/// recorded on the agent side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The AgentID of AgentLogin.
    pub id: String,
    /// Record this agent's calls while logged in.
    #[serde(default)]
    pub record: bool,
}

/// `[sip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP ports carrying SIP (SIP on other ports is still found by its first line).
    #[serde(default = "default_sip_ports")]
    pub ports: Vec<u16>,
}

fn default_sip_ports() -> Vec<u16> {
    vec![5060]
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig { ports: default_sip_ports() }
    }
}

/// `[recording]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// host[:port] of the Resource Manager, as written in the recording Request-URI.
    #[serde(default = "default_rm")]
    pub resource_manager: String,
}

fn default_rm() -> String {
    "127.0.0.1:5070".to_string()
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { resource_manager: default_rm() }
    }
}

/// `[[extension]]`: an agent's DN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionDn {
    /// The DN (user part of its SIP URI).
    pub dn: String,
    /// Record every call of this DN, agent side.
    #[serde(default)]
    pub record: bool,
}

/// `[[trunk]]`: a carrier trunk; calls over it have the customer on the trunk side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkDn {
    /// The trunk's DN: the `dn=` of recordings it triggers.
    pub dn: String,
    /// The trunk's SIP signalling address (ip:port); calls from or to it are trunk calls.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
    /// A DN pattern (`*` any run, `?` one character) matched against the far party's DN.
    #[serde(default)]
    pub dn_pattern: Option<String>,
    /// Record every call over this trunk, customer side.
    #[serde(default)]
    pub record: bool,
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::Read { path: path.display().to_string(), err })?;
        Self::parse(&text).map_err(|msg| ConfigError::Invalid { path: path.display().to_string(), msg })
    }

    /// Parses TOML text; the error is the parser's message.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        for t in &cfg.trunks {
            if t.peer.is_none() && t.dn_pattern.is_none() {
                return Err(format!("trunk {} needs `peer` or `dn_pattern` to be matched", t.dn));
            }
        }
        let c = &cfg.cti;
        let ids = [c.private_msg_start, c.private_msg_stop, c.private_msg_pause, c.private_msg_resume];
        if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
            return Err("[cti] private_msg_start, _stop, _pause and _resume must be four different ids".into());
        }
        if let Some(r) = c.dest_roots.iter().find(|r| !r.is_absolute()) {
            return Err(format!("[cti] dest_roots entries must be absolute paths, not {}", r.display()));
        }
        if cfg.sip.ports.is_empty() {
            return Err("[sip] ports must list at least one port".into());
        }
        Ok(cfg)
    }

    /// Adds `--record-dn` shorthands: each is a recorded Extension DN.
    pub fn add_recorded_dns(&mut self, dns: &[String]) {
        for dn in dns {
            self.extensions.push(ExtensionDn { dn: dn.clone(), record: true });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_config_parses() {
        let cfg = Config::parse(
            r#"
            [sip]
            ports = [5060, 5080]
            [recording]
            resource_manager = "rm.example:5070"
            [[extension]]
            dn = "2001"
            record = true
            [[trunk]]
            dn = "carrier"
            peer = "203.0.113.5:5060"
            record = true
            [[trunk]]
            dn = "pstn"
            dn_pattern = "+1*"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.sip.ports, vec![5060, 5080]);
        assert_eq!(cfg.recording.resource_manager, "rm.example:5070");
        assert_eq!(cfg.extensions[0].dn, "2001");
        assert!(cfg.extensions[0].record);
        assert_eq!(cfg.trunks[0].peer, Some("203.0.113.5:5060".parse().unwrap()));
        assert!(!cfg.trunks[1].record);
    }

    #[test]
    fn typos_and_unmatchable_trunks_are_errors() {
        let e = Config::parse("[[extension]]\ndn = \"1\"\nrecrod = true\n").unwrap_err();
        assert!(e.contains("recrod"), "{e}");
        let e = Config::parse("[[trunk]]\ndn = \"t\"\nrecord = true\n").unwrap_err();
        assert!(e.contains("peer"), "{e}");
        assert!(Config::parse("[sip]\nports = []\n").is_err());
        assert!(Config::parse("this is not toml").is_err());
    }

    #[test]
    fn cti_and_agents() {
        let cfg = Config::default();
        assert_eq!(cfg.cti.private_msg_start, 3013);
        assert_eq!(cfg.cti.private_msg_resume, 3016);
        let cfg = Config::parse(
            "[cti]\nprivate_msg_start = 1\nprivate_msg_stop = 2\n[[agent]]\nid = \"a1\"\nrecord = true\n[[agent]]\nid = \"a2\"\n",
        )
        .unwrap();
        assert_eq!((cfg.cti.private_msg_start, cfg.cti.private_msg_stop, cfg.cti.private_msg_pause), (1, 2, 3015));
        assert_eq!(cfg.agents.len(), 2);
        assert!(cfg.agents[0].record && !cfg.agents[1].record);
        let e = Config::parse("[cti]\nprivate_msg_stop = 3013\n").unwrap_err();
        assert!(e.contains("different"), "{e}");
        assert!(Config::parse("[cti]\nstart = 1\n").is_err());
    }

    #[test]
    fn record_dn_shorthand() {
        let mut cfg = Config::default();
        cfg.add_recorded_dns(&["2001".into()]);
        assert!(cfg.extensions[0].record);
        assert_eq!(cfg.sip.ports, vec![5060]);
    }
}
