//! CTI-side state of the on-demand triggers: which client registered which DN, and which agent
//! is logged in on which DN. Plain bookkeeping; the control core decides what it means.

use super::core::CtiClient;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// DN registrations. A DN may be registered by several clients, a client may register many DNs.
#[derive(Debug, Default)]
pub struct Registrations {
    by_dn: BTreeMap<String, BTreeSet<CtiClient>>,
}

impl Registrations {
    /// Registers `dn` for `client` (again is fine).
    pub fn register(&mut self, client: CtiClient, dn: &str) {
        self.by_dn.entry(dn.to_string()).or_default().insert(client);
    }

    /// Unregisters; false when `client` had not registered `dn`.
    pub fn unregister(&mut self, client: CtiClient, dn: &str) -> bool {
        let Some(set) = self.by_dn.get_mut(dn) else { return false };
        let was = set.remove(&client);
        if set.is_empty() {
            self.by_dn.remove(dn);
        }
        was
    }

    /// Whether `client` registered `dn`.
    pub fn is_registered(&self, client: CtiClient, dn: &str) -> bool {
        self.by_dn.get(dn).is_some_and(|s| s.contains(&client))
    }

    /// Clients registered on `dn`, in client order.
    pub fn clients(&self, dn: &str) -> impl Iterator<Item = CtiClient> + '_ {
        self.by_dn.get(dn).into_iter().flatten().copied()
    }

    /// Number of DNs `client` registered.
    pub fn count_of(&self, client: CtiClient) -> usize {
        self.by_dn.values().filter(|s| s.contains(&client)).count()
    }

    /// Forgets every registration of `client`.
    pub fn remove_client(&mut self, client: CtiClient) {
        self.by_dn.retain(|_, s| {
            s.remove(&client);
            !s.is_empty()
        });
    }
}

/// Why an agent could not log in or out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// AgentID empty.
    #[error("AgentID must not be empty")]
    EmptyId,
    /// Another agent sits at that DN.
    #[error("agent {other} is already logged in on DN {dn}: log it out first")]
    DnTaken {
        /// The DN.
        dn: String,
        /// The agent there.
        other: String,
    },
    /// AgentLogout on a DN with nobody logged in.
    #[error("no agent is logged in on DN {0}")]
    NotLoggedIn(String),
}

/// Agents logged in, and which agents are to be recorded (`[[agent]] record = true`).
///
/// An agent logging in on a second DN moves there (its old DN is logged out), as a desktop
/// that reconnects elsewhere would expect; a DN already taken by another agent is refused.
#[derive(Debug, Default)]
pub struct Agents {
    on_dn: BTreeMap<String, String>,
    recorded: HashSet<String>,
}

impl Agents {
    /// Agents from the configuration; those with `record = true` are recorded.
    pub fn new<'a>(recorded: impl IntoIterator<Item = &'a str>) -> Agents {
        Agents { on_dn: BTreeMap::new(), recorded: recorded.into_iter().map(str::to_string).collect() }
    }

    /// Logs `agent` in on `dn`; returns the DN it moved from, if any.
    pub fn login(&mut self, dn: &str, agent: &str) -> Result<Option<String>, AgentError> {
        if agent.is_empty() {
            return Err(AgentError::EmptyId);
        }
        match self.on_dn.get(dn) {
            Some(a) if a == agent => return Ok(None),
            Some(other) => return Err(AgentError::DnTaken { dn: dn.to_string(), other: other.clone() }),
            None => {}
        }
        let old = self.on_dn.iter().find(|(_, a)| *a == agent).map(|(d, _)| d.clone());
        if let Some(old) = &old {
            self.on_dn.remove(old);
        }
        self.on_dn.insert(dn.to_string(), agent.to_string());
        Ok(old)
    }

    /// Logs out whoever is on `dn`; returns the agent.
    pub fn logout(&mut self, dn: &str) -> Result<String, AgentError> {
        self.on_dn.remove(dn).ok_or_else(|| AgentError::NotLoggedIn(dn.to_string()))
    }

    /// The agent on `dn`, if one is logged in there and is to be recorded.
    pub fn recorded_on(&self, dn: &str) -> Option<&str> {
        self.on_dn.get(dn).filter(|a| self.recorded.contains(*a)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_per_client() {
        let (c1, c2) = (CtiClient(1), CtiClient(2));
        let mut r = Registrations::default();
        r.register(c1, "2001");
        r.register(c2, "2001");
        r.register(c1, "2001");
        r.register(c1, "2002");
        assert_eq!(r.clients("2001").collect::<Vec<_>>(), vec![c1, c2]);
        assert_eq!(r.count_of(c1), 2);
        assert!(r.unregister(c2, "2001"));
        assert!(!r.unregister(c2, "2001"));
        assert!(!r.unregister(c2, "9999"));
        r.remove_client(c1);
        assert_eq!(r.clients("2001").count(), 0);
        assert!(!r.is_registered(c1, "2002"));
        assert!(r.by_dn.is_empty());
    }

    #[test]
    fn agents_move_and_dns_are_exclusive() {
        let mut a = Agents::new(["a1"]);
        assert_eq!(a.login("2001", "a1"), Ok(None));
        assert_eq!(a.login("2001", "a1"), Ok(None));
        assert_eq!(a.recorded_on("2001"), Some("a1"));
        assert_eq!(a.login("2001", "a2"), Err(AgentError::DnTaken { dn: "2001".into(), other: "a1".into() }));
        assert_eq!(a.login("2002", "a1"), Ok(Some("2001".into())));
        assert_eq!(a.recorded_on("2001"), None);
        assert_eq!(a.login("2001", "a2"), Ok(None));
        // a2 is logged in but not configured for recording
        assert_eq!(a.recorded_on("2001"), None);
        assert_eq!(a.logout("2001"), Ok("a2".into()));
        assert_eq!(a.logout("2001"), Err(AgentError::NotLoggedIn("2001".into())));
        assert_eq!(a.login("2003", ""), Err(AgentError::EmptyId));
    }
}
