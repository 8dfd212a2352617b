//! The JSON sidecar of a finished recording: the control core's fields plus what the writer
//! knows (format, codecs, start/stop, pauses, per-channel counters), written atomically.

use super::jitter::ChannelCounters;
use crate::Timestamp;
use serde_json::{json, Map, Value};
use std::path::Path;

/// What the writer adds to the control core's sidecar fields.
pub struct SidecarFacts<'a> {
    /// "g711-alaw", "g711-ulaw" or "pcm16".
    pub format: &'static str,
    /// The WAV's file name.
    pub wav_name: String,
    /// Codec names of the left and right streams ("PCMA"/"PCMU"), if any audio came.
    pub codecs: [Option<&'static str>; 2],
    /// The MSML `<dialogstart>` time.
    pub started: Timestamp,
    /// Capture time of sample 0 (the first packet), if any packet came.
    pub origin: Option<Timestamp>,
    /// Stop time.
    pub stop: Timestamp,
    /// Samples per channel in the file.
    pub duration_samples: u64,
    /// Pause intervals.
    pub pauses: &'a [(Timestamp, Option<Timestamp>)],
    /// Left and right counters.
    pub channels: [ChannelCounters; 2],
    /// Why the recording failed, if it did.
    pub error: Option<&'a str>,
}

/// The civil (UTC) RFC 3339 form of a capture time, millisecond precision.
pub fn rfc3339(t: Timestamp) -> String {
    t.rfc3339_millis()
}

/// The sidecar's JSON object: `base` (the control core's fields) plus `facts`.
pub fn build(base: &Map<String, Value>, facts: &SidecarFacts<'_>) -> Map<String, Value> {
    let mut m = base.clone();
    let start = facts.origin.unwrap_or(facts.started);
    let pauses: Vec<Value> = facts
        .pauses
        .iter()
        .map(|(a, b)| {
            let b = b.unwrap_or(facts.stop);
            json!({"start": a.as_secs_f64(), "stop": b.as_secs_f64(),
                   "start_rfc3339": rfc3339(*a), "stop_rfc3339": rfc3339(b)})
        })
        .collect();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("format", json!(facts.format));
    put("wav", json!(facts.wav_name));
    put("codec", json!({"left": facts.codecs[0], "right": facts.codecs[1]}));
    put("started", json!(facts.started.as_secs_f64()));
    put("start", json!(start.as_secs_f64()));
    put("start_rfc3339", json!(rfc3339(start)));
    put("stop", json!(facts.stop.as_secs_f64()));
    put("stop_rfc3339", json!(rfc3339(facts.stop)));
    put("sample_rate", json!(8000));
    put("duration_samples", json!(facts.duration_samples));
    put("duration_seconds", json!(facts.duration_samples as f64 / 8000.0));
    put("pauses", Value::Array(pauses));
    put("channels", json!({"left": facts.channels[0], "right": facts.channels[1]}));
    put("failed", json!(facts.error.is_some()));
    if let Some(e) = facts.error {
        put("error", json!(e));
    }
    m
}

/// Writes `value` to `path` through a temporary file and a rename, so a reader never sees
/// half a sidecar.
pub fn write_atomic(path: &Path, value: &Map<String, Value>) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_points() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Timestamp::from_parts(951_782_400, 5_000_000)),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(rfc3339(Timestamp::from_parts(1_764_112_496, 0)), "2025-11-25T23:14:56.000Z");
    }

    #[test]
    fn build_keeps_base_and_adds_facts_then_writes_atomically() {
        let mut base = Map::new();
        base.insert("conf_id".into(), json!("c1"));
        let pauses = [(Timestamp::from_parts(10, 0), None)];
        let facts = SidecarFacts {
            format: "g711-alaw",
            wav_name: "c1.wav".into(),
            codecs: [Some("PCMA"), None],
            started: Timestamp::from_parts(9, 0),
            origin: Some(Timestamp::from_parts(9, 500_000_000)),
            stop: Timestamp::from_parts(12, 0),
            duration_samples: 20_000,
            pauses: &pauses,
            channels: [
                ChannelCounters { packets: 3, ..Default::default() },
                ChannelCounters::default(),
            ],
            error: None,
        };
        let m = build(&base, &facts);
        assert_eq!(m["conf_id"], "c1");
        assert_eq!(m["format"], "g711-alaw");
        assert_eq!(m["start"], 9.5);
        assert_eq!(m["pauses"][0]["stop"], 12.0);
        assert_eq!(m["channels"]["left"]["packets"], 3);
        assert_eq!(m["codec"]["right"], Value::Null);
        assert_eq!(m["failed"], false);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c1.json");
        write_atomic(&p, &m).unwrap();
        let back: Map<String, Value> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left behind");
    }
}
