//! Static triggers: which answered calls are recorded, for which DN, and which party is the
//! customer (left channel). Extension DNs record the agent side; Trunk DNs the customer side.

use crate::config::Config;
use std::collections::HashSet;
use std::net::SocketAddr;

/// One side of a call as the trigger engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct PartyView<'a> {
    /// The party's DN, if the SIP named one.
    pub dn: Option<&'a str>,
    /// The party's SIP signalling address.
    pub sip_addr: SocketAddr,
}

/// What set a recording off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerKind {
    /// A recorded Extension DN (agent side).
    Extension,
    /// A recorded Trunk DN (customer side).
    Trunk,
}

impl TriggerKind {
    /// Name used in the sidecar and logs.
    pub fn name(self) -> &'static str {
        match self {
            TriggerKind::Extension => "extension",
            TriggerKind::Trunk => "trunk",
        }
    }
}

/// A decision to record a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The DN written into the recording Request-URI (`dn=`).
    pub dn: String,
    /// True when the caller is the customer (left channel); false when the callee is.
    pub customer_is_caller: bool,
    /// What triggered it.
    pub trigger: TriggerKind,
}

struct Trunk {
    dn: String,
    peer: Option<SocketAddr>,
    pattern: Option<String>,
}

/// The static trigger rules, built once from the configuration.
pub struct StaticTriggers {
    extensions: HashSet<String>,
    trunks: Vec<Trunk>,
}

impl StaticTriggers {
    /// Rules from the configuration (only entries with `record = true` count).
    pub fn new(cfg: &Config) -> Self {
        StaticTriggers {
            extensions: cfg.extensions.iter().filter(|e| e.record).map(|e| e.dn.clone()).collect(),
            trunks: cfg
                .trunks
                .iter()
                .filter(|t| t.record)
                .map(|t| Trunk { dn: t.dn.clone(), peer: t.peer, pattern: t.dn_pattern.clone() })
                .collect(),
        }
    }

    /// Whether `dn` is a recorded Extension DN (agent side).
    pub fn is_recorded_extension(&self, dn: &str) -> bool {
        self.extensions.contains(dn)
    }

    /// Decides for a call between `caller` and `callee`. A recorded extension wins over a
    /// trunk (its DN is the more specific); the callee's extension over the caller's.
    pub fn decide(&self, caller: PartyView<'_>, callee: PartyView<'_>) -> Option<Decision> {
        let ext = |p: PartyView<'_>| p.dn.filter(|dn| self.extensions.contains(*dn)).map(str::to_string);
        if let Some(dn) = ext(callee) {
            return Some(Decision { dn, customer_is_caller: true, trigger: TriggerKind::Extension });
        }
        if let Some(dn) = ext(caller) {
            return Some(Decision { dn, customer_is_caller: false, trigger: TriggerKind::Extension });
        }
        if let Some(t) = self.trunk_of(caller) {
            return Some(Decision { dn: t.dn.clone(), customer_is_caller: true, trigger: TriggerKind::Trunk });
        }
        if let Some(t) = self.trunk_of(callee) {
            return Some(Decision { dn: t.dn.clone(), customer_is_caller: false, trigger: TriggerKind::Trunk });
        }
        None
    }

    fn trunk_of(&self, p: PartyView<'_>) -> Option<&Trunk> {
        self.trunks.iter().find(|t| {
            t.peer == Some(p.sip_addr)
                || matches!((&t.pattern, p.dn), (Some(pat), Some(dn)) if glob(pat.as_bytes(), dn.as_bytes()))
        })
    }
}

/// `*` matches any run, `?` one byte; everything else literally. Hand-written: a DN pattern
/// needs nothing more, and a regex engine would be a heavy dependency for it.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(dn: &str, addr: &str) -> PartyView<'static> {
        PartyView { dn: Some(Box::leak(dn.to_string().into_boxed_str())), sip_addr: addr.parse().unwrap() }
    }

    fn rules() -> StaticTriggers {
        let cfg = Config::parse(
            r#"
            [[extension]]
            dn = "2001"
            record = true
            [[extension]]
            dn = "2002"
            [[trunk]]
            dn = "carrier"
            peer = "203.0.113.5:5060"
            record = true
            [[trunk]]
            dn = "intl"
            dn_pattern = "+44*"
            record = true
            "#,
        )
        .unwrap();
        StaticTriggers::new(&cfg)
    }

    #[test]
    fn extension_dn_records_agent_side() {
        let r = rules();
        let d = r.decide(party("5551234", "192.0.2.10:5060"), party("2001", "192.0.2.20:5060")).unwrap();
        assert_eq!(d, Decision { dn: "2001".into(), customer_is_caller: true, trigger: TriggerKind::Extension });
        let d = r.decide(party("2001", "192.0.2.20:5060"), party("5551234", "192.0.2.10:5060")).unwrap();
        assert!(!d.customer_is_caller);
        // record = false and unknown DNs do not record
        assert_eq!(r.decide(party("5551234", "192.0.2.10:5060"), party("2002", "192.0.2.20:5060")), None);
        assert_eq!(r.decide(party("5551234", "192.0.2.10:5060"), party("2999", "192.0.2.20:5060")), None);
    }

    #[test]
    fn trunk_by_peer_and_by_pattern_is_customer_side() {
        let r = rules();
        let d = r.decide(party("5551234", "203.0.113.5:5060"), party("2999", "192.0.2.20:5060")).unwrap();
        assert_eq!(d, Decision { dn: "carrier".into(), customer_is_caller: true, trigger: TriggerKind::Trunk });
        let d = r.decide(party("2999", "192.0.2.20:5060"), party("+447700900", "198.51.100.1:5060")).unwrap();
        assert_eq!(d, Decision { dn: "intl".into(), customer_is_caller: false, trigger: TriggerKind::Trunk });
        // the same port on another host is not the trunk
        assert_eq!(r.decide(party("555", "203.0.113.6:5060"), party("2999", "192.0.2.20:5060")), None);
    }

    #[test]
    fn glob_patterns() {
        assert!(glob(b"+44*", b"+447700"));
        assert!(glob(b"*", b""));
        assert!(glob(b"20?1", b"2001"));
        assert!(glob(b"2*1", b"2000001"));
        assert!(!glob(b"2*1", b"2000002"));
        assert!(!glob(b"+44*", b"+33123"));
        assert!(!glob(b"2001", b"20011"));
    }
}
