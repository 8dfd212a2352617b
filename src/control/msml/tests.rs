//! MSML bodies both ways: byte-exact output, round trips, and every rejection.
use super::*;

fn conf(s: &str) -> ConfId {
    ConfId::new(s).unwrap()
}

const START: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<msml version="1.1">
  <dialogstart target="conf:c-1" name="record" type="application/moml+xml">
    <record dest="file:///rec/c-1.wav" format="audio/wav;codec=pcma" />
  </dialogstart>
</msml>"#;

#[test]
fn dialogstart_is_byte_exact_and_round_trips() {
    let req = MsmlRequest::Start {
        conf_id: conf("c-1"),
        dest: "file:///rec/c-1.wav".into(),
        format: "audio/wav;codec=pcma".into(),
    };
    assert_eq!(req.to_xml(), START);
    assert_eq!(MsmlRequest::parse(START.as_bytes()), Ok(req));
}

#[test]
fn send_and_dialogend_are_byte_exact_and_round_trip() {
    let cases = [
        (
            MsmlRequest::Pause {
                conf_id: conf("c-1"),
            },
            r#"<send target="conf:c-1/dialog:record" event="pause"/>"#,
        ),
        (
            MsmlRequest::Resume {
                conf_id: conf("c-1"),
            },
            r#"<send target="conf:c-1/dialog:record" event="resume"/>"#,
        ),
        (
            MsmlRequest::Stop {
                conf_id: conf("c-1"),
            },
            r#"<dialogend id="conf:c-1/dialog:record"/>"#,
        ),
    ];
    for (req, op) in cases {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\">\n  {op}\n</msml>"
        );
        assert_eq!(req.to_xml(), xml);
        assert_eq!(MsmlRequest::parse(xml.as_bytes()), Ok(req));
    }
}

#[test]
fn results_are_byte_exact_and_round_trip() {
    let ok = MsmlResult::ok();
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\">\n  <result response=\"200\"/>\n</msml>";
    assert_eq!(ok.to_xml(), xml);
    assert_eq!(MsmlResult::parse(xml.as_bytes()), Ok(ok));
    let err = MsmlResult::error(404, "unknown conference <c-9> & more");
    let xml = err.to_xml();
    assert_eq!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<msml version=\"1.1\">\n  <result response=\"404\">\n    \
         <description>unknown conference &lt;c-9&gt; &amp; more</description>\n  </result>\n</msml>"
    );
    assert_eq!(MsmlResult::parse(xml.as_bytes()), Ok(err));
    // the compact form of design section 2 parses too
    let compact = br#"<msml version="1.1"><result response="200"/></msml>"#;
    assert_eq!(MsmlResult::parse(compact), Ok(MsmlResult::ok()));
}

#[test]
fn attribute_values_are_escaped_and_unescaped() {
    let req = MsmlRequest::Start {
        conf_id: conf("c"),
        dest: "file:///a \"b\" & <c>.wav".into(),
        format: "audio/wav".into(),
    };
    let xml = req.to_xml();
    assert!(
        xml.contains(r#"dest="file:///a &quot;b&quot; &amp; &lt;c&gt;.wav""#),
        "{xml}"
    );
    assert_eq!(MsmlRequest::parse(xml.as_bytes()), Ok(req));
}

#[test]
fn lenient_where_rfc_5707_allows() {
    // no declaration, no name/type, no format, comments, single quotes
    let body = b"<!-- hi --><msml version='1.1'><dialogstart target='conf:x'><record dest='file:///x.wav'/></dialogstart></msml>";
    assert_eq!(
        MsmlRequest::parse(body),
        Ok(MsmlRequest::Start {
            conf_id: conf("x"),
            dest: "file:///x.wav".into(),
            format: "audio/wav".into()
        })
    );
}

#[test]
fn bad_bodies_are_errors_naming_the_problem() {
    let v = |op: &str| format!("<msml version=\"1.1\">{op}</msml>");
    let cases: Vec<(String, MsmlError)> = vec![
        ("".into(), MsmlError::Xml("no root element".into())),
        ("<msml version=\"1.1\"><send".into(), MsmlError::Xml(String::new())),
        ("<msml version=\"1.1\"></msm>".into(), MsmlError::Xml(String::new())),
        ("<moml version=\"1.1\"/>".into(), MsmlError::Root("moml".into())),
        ("<msml><dialogend id=\"conf:a/dialog:record\"/></msml>".into(), MsmlError::Version(None)),
        ("<msml version=\"2\"/>".into(), MsmlError::Version(Some("2".into()))),
        (v(""), MsmlError::Operations(0)),
        (v("<dialogend id=\"conf:a/dialog:record\"/><dialogend id=\"conf:a/dialog:record\"/>"), MsmlError::Operations(2)),
        (v("<play/>"), MsmlError::UnknownElement { element: "play".into(), parent: "msml".into() }),
        (v("<dialogstart target=\"conf:a\"><record dest=\"f\"/><play/></dialogstart>"), MsmlError::UnknownElement { element: "play".into(), parent: "dialogstart".into() }),
        (v("<dialogstart target=\"conf:a\"></dialogstart>"), MsmlError::NoRecord),
        (v("<dialogstart target=\"conf:a\"><record dest=\"f\"/><record dest=\"g\"/></dialogstart>"), MsmlError::NoRecord),
        (v("<dialogstart target=\"conf:a\"><record/></dialogstart>"), MsmlError::MissingAttribute { element: "record", attribute: "dest" }),
        (v("<dialogstart><record dest=\"f\"/></dialogstart>"), MsmlError::MissingAttribute { element: "dialogstart", attribute: "target" }),
        (v("<dialogstart target=\"a\"><record dest=\"f\"/></dialogstart>"), MsmlError::Target("a".into())),
        (v("<dialogstart target=\"conf:a/b\"><record dest=\"f\"/></dialogstart>"), MsmlError::Target("conf:a/b".into())),
        (v("<dialogstart target=\"conf:a\" name=\"play\"><record dest=\"f\"/></dialogstart>"), MsmlError::Dialog("play".into())),
        (v("<send target=\"conf:a/dialog:record\" event=\"stop\"/>"), MsmlError::Event("stop".into())),
        (v("<send target=\"conf:a/dialog:record\"/>"), MsmlError::MissingAttribute { element: "send", attribute: "event" }),
        (v("<send target=\"conf:a/dialog:play\" event=\"pause\"/>"), MsmlError::Dialog("play".into())),
        (v("<send target=\"conf:a\" event=\"pause\"/>"), MsmlError::Target("conf:a".into())),
        (v("<dialogend id=\"conf:a/dialog:record\">now</dialogend>"), MsmlError::Text("now".into(), "dialogend".into())),
        (v("<dialogend/>"), MsmlError::MissingAttribute { element: "dialogend", attribute: "id" }),
        (v("<result response=\"200\"/>"), MsmlError::NotARequest),
        ("<!DOCTYPE x><msml version=\"1.1\"/>".into(), MsmlError::Xml("DOCTYPE is not allowed in MSML".into())),
        (format!("<msml version=\"1.1\">{}</msml>", "<a>".repeat(5)), MsmlError::TooLarge),
    ];
    for (body, want) in cases {
        let got = MsmlRequest::parse(body.as_bytes());
        match (&got, &want) {
            // the wording of quick-xml's own errors is not ours to pin down
            (Err(MsmlError::Xml(_)), MsmlError::Xml(w)) if w.is_empty() => {}
            _ => assert_eq!(got, Err(want), "{body}"),
        }
    }
    assert_eq!(
        MsmlRequest::parse(&vec![b' '; MAX_BODY + 1]),
        Err(MsmlError::TooLarge)
    );
    assert!(MsmlRequest::parse(b"\xff\xfe<msml/>").is_err());
}

#[test]
fn bad_results_are_errors() {
    let v = |op: &str| format!("<msml version=\"1.1\">{op}</msml>");
    assert_eq!(
        MsmlResult::parse(v("<result/>").as_bytes()),
        Err(MsmlError::MissingAttribute {
            element: "result",
            attribute: "response"
        })
    );
    assert_eq!(
        MsmlResult::parse(v("<result response=\"ok\"/>").as_bytes()),
        Err(MsmlError::Response("ok".into()))
    );
    assert_eq!(
        MsmlResult::parse(v("<result response=\"99\"/>").as_bytes()),
        Err(MsmlError::Response("99".into()))
    );
    assert_eq!(
        MsmlResult::parse(v("<dialogend id=\"conf:a/dialog:record\"/>").as_bytes()),
        Err(MsmlError::NotAResult)
    );
    assert_eq!(
        MsmlResult::parse(v("<result response=\"200\"><x/></result>").as_bytes()),
        Err(MsmlError::UnknownElement {
            element: "x".into(),
            parent: "result".into()
        })
    );
}
