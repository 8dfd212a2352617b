//! MSML bodies (RFC 5707, the subset the recording flow uses), built and parsed with quick-xml:
//! `<dialogstart>` + `<record>`, `<send event="pause|resume">`, `<dialogend>`, and the MCP's
//! `<result>`.
//!
//! Bodies are written exactly as design section 2 shows them (XML declaration, `msml
//! version="1.1"`, two-space indent). Parsing is strict: anything not well-formed, a root other
//! than `<msml version="1.1">`, an unknown element, stray text, or more or fewer than one
//! operation is an error the MCP answers with a 4xx `<result>`. Unknown attributes are ignored.

use crate::control::uri::ConfId;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

/// The only dialog name the recording flow uses (`conf:ID/dialog:record`).
pub const DIALOG_NAME: &str = "record";

/// Biggest MSML body accepted: the real ones are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;
/// Deepest element nesting accepted (msml > result > description is 3).
const MAX_DEPTH: usize = 4;
/// Most elements accepted in one body.
const MAX_ELEMENTS: usize = 16;

/// Why an MSML body could not be used. Each message fits in a `<result>` description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MsmlError {
    /// Not well-formed XML (or not UTF-8).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The body is bigger or deeper than any MSML the flow uses.
    #[error("MSML body too large or too deeply nested")]
    TooLarge,
    /// The root element is not `<msml>`.
    #[error("root element is <{0}>, expected <msml>")]
    Root(String),
    /// The `version` attribute is missing or not 1.1.
    #[error("unsupported MSML version {0:?}, expected \"1.1\"")]
    Version(Option<String>),
    /// An element this subset does not know, inside the named parent.
    #[error("unknown element <{element}> in <{parent}>")]
    UnknownElement {
        /// The unknown element.
        element: String,
        /// Its parent.
        parent: String,
    },
    /// A required attribute is missing.
    #[error("<{element}> has no {attribute} attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The missing attribute.
        attribute: &'static str,
    },
    /// A `target`/`id` is not `conf:ID` (dialogstart) or `conf:ID/dialog:record`.
    #[error("bad target {0:?}: expected conf:<conf-id> or conf:<conf-id>/dialog:record")]
    Target(String),
    /// A dialog other than `record` was named.
    #[error("unsupported dialog {0:?}: only \"record\" is supported")]
    Dialog(String),
    /// A `<send>` event other than pause or resume.
    #[error("unsupported event {0:?}: only pause and resume are supported")]
    Event(String),
    /// `<dialogstart>` without exactly one `<record>`.
    #[error("<dialogstart> must hold exactly one <record>")]
    NoRecord,
    /// Not exactly one operation inside `<msml>`.
    #[error("expected exactly one MSML operation, found {0}")]
    Operations(usize),
    /// Text where only elements belong.
    #[error("unexpected text {0:?} in <{1}>")]
    Text(String, String),
    /// A `<result>` response that is not a status code 100..=699.
    #[error("bad result response {0:?}")]
    Response(String),
    /// A result where a request was expected.
    #[error("expected an MSML request, got a <result>")]
    NotARequest,
    /// A request where a result was expected.
    #[error("expected an MSML <result>, got a request")]
    NotAResult,
}

/// One MSML request from the SIP Server role to the MCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsmlRequest {
    /// `<dialogstart target="conf:ID" name="record"><record dest=.. format=../>`.
    Start {
        /// The conference.
        conf_id: ConfId,
        /// Where to record, a URL (`file:///out/ID.wav`).
        dest: String,
        /// MIME-like format, e.g. `audio/wav;codec=pcma`.
        format: String,
    },
    /// `<send target="conf:ID/dialog:record" event="pause"/>`.
    Pause {
        /// The conference.
        conf_id: ConfId,
    },
    /// `<send target="conf:ID/dialog:record" event="resume"/>`.
    Resume {
        /// The conference.
        conf_id: ConfId,
    },
    /// `<dialogend id="conf:ID/dialog:record"/>`.
    Stop {
        /// The conference.
        conf_id: ConfId,
    },
}

/// The MCP's answer to one MSML request: `<result response="200"/>`, or a 4xx with a
/// `<description>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsmlResult {
    /// Status, 200 for success.
    pub code: u16,
    /// Human-readable reason, for failures.
    pub description: Option<String>,
}

impl MsmlRequest {
    /// The conference the request is about.
    pub fn conf_id(&self) -> &ConfId {
        match self {
            MsmlRequest::Start { conf_id, .. }
            | MsmlRequest::Pause { conf_id }
            | MsmlRequest::Resume { conf_id }
            | MsmlRequest::Stop { conf_id } => conf_id,
        }
    }

    /// The body text, as in design section 2.
    pub fn to_xml(&self) -> String {
        let dialog = format!("conf:{}/dialog:{DIALOG_NAME}", self.conf_id());
        document(|w| match self {
            MsmlRequest::Start {
                conf_id,
                dest,
                format,
            } => {
                let target = format!("conf:{conf_id}");
                let mut start = BytesStart::new("dialogstart");
                start.push_attribute(("target", target.as_str()));
                start.push_attribute(("name", DIALOG_NAME));
                start.push_attribute(("type", "application/moml+xml"));
                w.write_event(Event::Start(start))?;
                let mut record = BytesStart::new("record");
                record.push_attribute(("dest", dest.as_str()));
                record.push_attribute(("format", format.as_str()));
                w.write_event(Event::Empty(spaced(record)))?;
                w.write_event(Event::End(BytesEnd::new("dialogstart")))
            }
            MsmlRequest::Pause { .. } | MsmlRequest::Resume { .. } => {
                let event = if matches!(self, MsmlRequest::Pause { .. }) {
                    "pause"
                } else {
                    "resume"
                };
                let mut send = BytesStart::new("send");
                send.push_attribute(("target", dialog.as_str()));
                send.push_attribute(("event", event));
                w.write_event(Event::Empty(send))
            }
            MsmlRequest::Stop { .. } => {
                let mut end = BytesStart::new("dialogend");
                end.push_attribute(("id", dialog.as_str()));
                w.write_event(Event::Empty(end))
            }
        })
    }

    /// Parses a request body (see the module docs for what is rejected).
    pub fn parse(body: &[u8]) -> Result<MsmlRequest, MsmlError> {
        let op = single_operation(body)?;
        match op.name.as_str() {
            "dialogstart" => {
                let target = op.attr("target").ok_or(MsmlError::MissingAttribute {
                    element: "dialogstart",
                    attribute: "target",
                })?;
                let conf_id = target
                    .strip_prefix("conf:")
                    .and_then(|id| ConfId::new(id).ok())
                    .ok_or_else(|| MsmlError::Target(target.to_string()))?;
                if let Some(name) = op.attr("name") {
                    if name != DIALOG_NAME {
                        return Err(MsmlError::Dialog(name.to_string()));
                    }
                }
                op.no_text()?;
                let mut records = 0;
                let mut found = None;
                for child in &op.children {
                    if child.name != "record" {
                        return Err(unknown(child, &op));
                    }
                    child.no_text()?;
                    if let Some(grandchild) = child.children.first() {
                        return Err(unknown(grandchild, child));
                    }
                    records += 1;
                    found = Some(child);
                }
                let record = match (records, found) {
                    (1, Some(r)) => r,
                    _ => return Err(MsmlError::NoRecord),
                };
                let dest = record.attr("dest").ok_or(MsmlError::MissingAttribute {
                    element: "record",
                    attribute: "dest",
                })?;
                let format = record.attr("format").unwrap_or("audio/wav");
                Ok(MsmlRequest::Start {
                    conf_id,
                    dest: dest.to_string(),
                    format: format.to_string(),
                })
            }
            "send" => {
                op.leaf()?;
                let target = op.attr("target").ok_or(MsmlError::MissingAttribute {
                    element: "send",
                    attribute: "target",
                })?;
                let conf_id = dialog_target(target)?;
                match op.attr("event") {
                    Some("pause") => Ok(MsmlRequest::Pause { conf_id }),
                    Some("resume") => Ok(MsmlRequest::Resume { conf_id }),
                    Some(other) => Err(MsmlError::Event(other.to_string())),
                    None => Err(MsmlError::MissingAttribute {
                        element: "send",
                        attribute: "event",
                    }),
                }
            }
            "dialogend" => {
                op.leaf()?;
                let id = op.attr("id").ok_or(MsmlError::MissingAttribute {
                    element: "dialogend",
                    attribute: "id",
                })?;
                Ok(MsmlRequest::Stop {
                    conf_id: dialog_target(id)?,
                })
            }
            "result" => Err(MsmlError::NotARequest),
            _ => Err(MsmlError::UnknownElement {
                element: op.name.clone(),
                parent: "msml".into(),
            }),
        }
    }
}

impl MsmlResult {
    /// `<result response="200"/>`.
    pub fn ok() -> MsmlResult {
        MsmlResult {
            code: 200,
            description: None,
        }
    }

    /// A failure with a reason.
    pub fn error(code: u16, description: impl Into<String>) -> MsmlResult {
        MsmlResult {
            code,
            description: Some(description.into()),
        }
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The body text.
    pub fn to_xml(&self) -> String {
        document(|w| {
            let code = self.code.to_string();
            let mut result = BytesStart::new("result");
            result.push_attribute(("response", code.as_str()));
            match &self.description {
                None => w.write_event(Event::Empty(result)),
                Some(text) => {
                    w.write_event(Event::Start(result))?;
                    w.write_event(Event::Start(BytesStart::new("description")))?;
                    w.write_event(Event::Text(BytesText::new(text)))?;
                    w.write_event(Event::End(BytesEnd::new("description")))?;
                    w.write_event(Event::End(BytesEnd::new("result")))
                }
            }
        })
    }

    /// Parses a result body.
    pub fn parse(body: &[u8]) -> Result<MsmlResult, MsmlError> {
        let op = single_operation(body)?;
        if op.name != "result" {
            return match op.name.as_str() {
                "dialogstart" | "send" | "dialogend" => Err(MsmlError::NotAResult),
                _ => Err(unknown(&op, &Element::named("msml"))),
            };
        }
        let response = op.attr("response").ok_or(MsmlError::MissingAttribute {
            element: "result",
            attribute: "response",
        })?;
        let code = response
            .parse::<u16>()
            .ok()
            .filter(|c| (100..700).contains(c))
            .ok_or_else(|| MsmlError::Response(response.to_string()))?;
        op.no_text()?;
        let mut description = None;
        for child in &op.children {
            if child.name != "description" {
                return Err(unknown(child, &op));
            }
            if let Some(grandchild) = child.children.first() {
                return Err(unknown(grandchild, child));
            }
            description = Some(child.text.trim().to_string());
        }
        Ok(MsmlResult { code, description })
    }
}

/// Writes the declaration and `<msml version="1.1">`, the body, and `</msml>`.
fn document(body: impl FnOnce(&mut Writer<Vec<u8>>) -> std::io::Result<()>) -> String {
    let mut w = Writer::new_with_indent(Vec::with_capacity(256), b' ', 2);
    let written = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let mut msml = BytesStart::new("msml");
        msml.push_attribute(("version", "1.1"));
        w.write_event(Event::Start(msml))?;
        body(&mut w)?;
        w.write_event(Event::End(BytesEnd::new("msml")))
    })();
    // Writing into a Vec<u8> cannot fail (no I/O), and quick-xml writes the &str input back
    // out, escaped, so the output is UTF-8.
    debug_assert!(written.is_ok());
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

/// The same empty element written as `<name attrs />`, the form design section 2 shows for
/// `<record>`: quick-xml writes `<name attrs/>`, so add the space inside the tag content.
fn spaced(tag: BytesStart<'_>) -> BytesStart<'static> {
    let name_len = tag.name().as_ref().len();
    let mut content = String::from_utf8_lossy(&tag).into_owned();
    content.push(' ');
    BytesStart::from_content(content, name_len)
}

/// `conf:ID/dialog:record` -> ID.
fn dialog_target(target: &str) -> Result<ConfId, MsmlError> {
    let bad = || MsmlError::Target(target.to_string());
    let rest = target.strip_prefix("conf:").ok_or_else(bad)?;
    let (id, dialog) = rest.split_once("/dialog:").ok_or_else(bad)?;
    if dialog != DIALOG_NAME {
        return Err(MsmlError::Dialog(dialog.to_string()));
    }
    ConfId::new(id).map_err(|_| bad())
}

fn unknown(child: &Element, parent: &Element) -> MsmlError {
    MsmlError::UnknownElement {
        element: child.name.clone(),
        parent: parent.name.clone(),
    }
}

/// A parsed element: the small tree is easier to check than a stream of events.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn named(name: &str) -> Element {
        Element {
            name: name.to_string(),
            ..Element::default()
        }
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn no_text(&self) -> Result<(), MsmlError> {
        if self.text.trim().is_empty() {
            Ok(())
        } else {
            Err(MsmlError::Text(
                self.text.trim().to_string(),
                self.name.clone(),
            ))
        }
    }
    fn leaf(&self) -> Result<(), MsmlError> {
        self.no_text()?;
        match self.children.first() {
            Some(child) => Err(unknown(child, self)),
            None => Ok(()),
        }
    }
}

/// Parses the body into a tree, checks the `<msml version="1.1">` root and returns its one
/// child.
fn single_operation(body: &[u8]) -> Result<Element, MsmlError> {
    let mut root = parse_tree(body)?;
    if root.name != "msml" {
        return Err(MsmlError::Root(root.name));
    }
    match root.attr("version") {
        Some("1.1") => {}
        other => return Err(MsmlError::Version(other.map(str::to_string))),
    }
    root.no_text()?;
    if root.children.len() != 1 {
        return Err(MsmlError::Operations(root.children.len()));
    }
    Ok(root.children.remove(0))
}

fn parse_tree(body: &[u8]) -> Result<Element, MsmlError> {
    if body.len() > MAX_BODY {
        return Err(MsmlError::TooLarge);
    }
    let xml_err = |e: quick_xml::Error| MsmlError::Xml(e.to_string());
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0;
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(MsmlError::Xml("content after the root element".into()));
                }
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(MsmlError::TooLarge);
                }
                let mut el = Element::named(&utf8(e.name().as_ref())?);
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| MsmlError::Xml(e.to_string()))?;
                    let value = attr.unescape_value().map_err(xml_err)?.into_owned();
                    el.attrs.push((utf8(attr.key.as_ref())?, value));
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else {
                    close(el, &mut stack, &mut root);
                }
            }
            Event::End(_) => {
                // quick-xml has already checked the end name matches.
                let el = stack
                    .pop()
                    .ok_or_else(|| MsmlError::Xml("unmatched end tag".into()))?;
                close(el, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(xml_err)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(MsmlError::Xml("text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let text = utf8(&c)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None => return Err(MsmlError::Xml("CDATA outside the root element".into())),
                }
            }
            Event::DocType(_) => {
                return Err(MsmlError::Xml("DOCTYPE is not allowed in MSML".into()))
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(MsmlError::Xml("unclosed element at end of body".into()));
    }
    root.ok_or_else(|| MsmlError::Xml("no root element".into()))
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, MsmlError> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| MsmlError::Xml("not UTF-8".into()))
}

#[cfg(test)]
mod tests;
