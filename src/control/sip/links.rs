//! The headers that tie one dialog to another: Refer-To (RFC 3515) with the Replaces it may
//! carry (RFC 3891), Replaces itself, Referred-By (RFC 3892), and a focus's Contact
//! (`isfocus`, RFC 4579). The control core follows transfers and conferences through them.

use super::text::{percent_decode, split_name_addr, uri_user};
use super::{SipMessage, StartLine};

/// Where a REFER sends its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTarget {
    /// User part of the Refer-To URI (the transfer target's DN).
    pub user: Option<String>,
    /// `user@host` of the Refer-To URI (port and parameters dropped, host lower-cased).
    pub target: Option<String>,
    /// Call-ID of the dialog named in an embedded `?Replaces=` (attended transfer).
    pub replaces: Option<String>,
}

impl SipMessage {
    /// The Refer-To of a REFER, if it has one that names a URI.
    pub fn refer_target(&self) -> Option<ReferTarget> {
        let value = self.header("Refer-To")?;
        let (uri, _) = split_name_addr(value).ok()?;
        let (base, headers) = match uri.split_once('?') {
            Some((b, h)) => (b, h),
            None => (uri, ""),
        };
        let replaces = headers
            .split('&')
            .filter_map(|h| h.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("Replaces"))
            .map(|(_, v)| replaces_call_id(&percent_decode(v)))
            .filter(|c| !c.is_empty());
        Some(ReferTarget {
            user: uri_user(base),
            target: user_at_host(base),
            replaces,
        })
    }

    /// Call-ID of the dialog a `Replaces` header names (INVITE with Replaces).
    pub fn replaces(&self) -> Option<String> {
        self.header("Replaces")
            .map(replaces_call_id)
            .filter(|c| !c.is_empty())
    }

    /// User part of Referred-By: the party that transferred this INVITE's sender.
    pub fn referred_by_user(&self) -> Option<String> {
        let (uri, _) = split_name_addr(self.header("Referred-By")?).ok()?;
        uri_user(uri)
    }

    /// Whether the Contact carries `isfocus` (the answerer is a conference focus).
    pub fn contact_is_focus(&self) -> bool {
        self.header_all("Contact").any(|v| {
            let params = match split_name_addr(v) {
                Ok((uri, params)) => format!("{uri}{params}"),
                Err(()) => v.to_string(),
            };
            params
                .split(';')
                .skip(1)
                .any(|p| p.split('=').next().unwrap_or("").trim().eq_ignore_ascii_case("isfocus"))
        })
    }

    /// `user@host` of a request's Request-URI (port and parameters dropped, host
    /// lower-cased): what several dialogs to one conference share.
    pub fn request_target(&self) -> Option<String> {
        match &self.start {
            StartLine::Request { uri, .. } => user_at_host(uri),
            StartLine::Response { .. } => None,
        }
    }
}

/// The Call-ID in a Replaces value: `callid;to-tag=..;from-tag=..`.
fn replaces_call_id(v: &str) -> String {
    v.split(';').next().unwrap_or("").trim().to_string()
}

/// `user@host` of a SIP URI, without port, parameters or headers; None without a user.
fn user_at_host(uri: &str) -> Option<String> {
    let user = uri_user(uri)?;
    let rest = uri.split_once(':')?.1;
    let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host_part = host_part.split([';', '?']).next().unwrap_or("");
    let host = if let Some(v6) = host_part.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_part.split(':').next().unwrap_or("")
    };
    Some(format!("{user}@{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(start: &str, extra: &str) -> SipMessage {
        let text = format!(
            "{start}\r\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bK1\r\nFrom: <sip:2001@192.0.2.21>;tag=a\r\nTo: <sip:+15550001@192.0.2.10>;tag=b\r\nCall-ID: d1@x\r\nCSeq: 3 {}\r\n{extra}Content-Length: 0\r\n\r\n",
            start.split(' ').next().unwrap_or("")
        );
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn blind_refer_to() {
        let m = msg("REFER sip:+15550001@192.0.2.10 SIP/2.0", "Refer-To: <sip:2002@192.0.2.22:5060>\r\n");
        let t = m.refer_target().unwrap();
        assert_eq!(t.user.as_deref(), Some("2002"));
        assert_eq!(t.target.as_deref(), Some("2002@192.0.2.22"));
        assert_eq!(t.replaces, None);
        // Compact form, addr-spec without brackets.
        let m = msg("REFER sip:+15550001@192.0.2.10 SIP/2.0", "r: sip:2003@PBX.example.com\r\n");
        assert_eq!(m.refer_target().unwrap().target.as_deref(), Some("2003@pbx.example.com"));
    }

    #[test]
    fn attended_refer_to_carries_the_replaced_call_id() {
        let m = msg(
            "REFER sip:+15550001@192.0.2.10 SIP/2.0",
            "Refer-To: <sip:2002@192.0.2.22:5060?Replaces=d2%40host%3Bto-tag%3Da2%3Bfrom-tag%3Da1>\r\n",
        );
        let t = m.refer_target().unwrap();
        assert_eq!(t.user.as_deref(), Some("2002"));
        assert_eq!(t.replaces.as_deref(), Some("d2@host"));
    }

    #[test]
    fn replaces_referred_by_and_focus() {
        let m = msg(
            "INVITE sip:2002@192.0.2.22:5060;transport=udp SIP/2.0",
            "Replaces: d2@host;to-tag=a2;from-tag=a1\r\nb: <sip:2001@192.0.2.21>\r\nContact: <sip:x@192.0.2.10>\r\n",
        );
        assert_eq!(m.replaces().as_deref(), Some("d2@host"));
        assert_eq!(m.referred_by_user().as_deref(), Some("2001"));
        assert!(!m.contact_is_focus());
        assert_eq!(m.request_target().as_deref(), Some("2002@192.0.2.22"));
        let f = msg("INVITE sip:conf1@192.0.2.40 SIP/2.0", "m: <sip:conf1@192.0.2.40:5060>;isfocus\r\n");
        assert!(f.contact_is_focus());
        let f = msg("INVITE sip:conf1@192.0.2.40 SIP/2.0", "Contact: <sip:conf1@192.0.2.40:5060;isfocus>\r\n");
        assert!(f.contact_is_focus());
        // Broken values give nothing, never a panic.
        let b = msg("REFER sip:a@b SIP/2.0", "Refer-To: <sip:2002@h?Replaces=>\r\nReplaces: ;to-tag=x\r\n");
        assert_eq!(b.refer_target().unwrap().replaces, None);
        assert_eq!(b.replaces(), None);
        let b = msg("REFER sip:a@b SIP/2.0", "Refer-To: <broken\r\n");
        assert_eq!(b.refer_target(), None);
    }
}
