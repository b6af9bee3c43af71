//! The line protocol with the host process: what one line it writes means, and reading lines
//! without letting one endless line take all memory.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::api::Status;

/// API Gateway's limit for one WebSocket frame; a larger one closes the socket (1009).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// The longest line read whole: past this nothing more of it is kept (it cannot be a frame).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// What a line from the process asks for.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// A frame to send on the signaling socket as it is (compact JSON).
    Frame(String),
    /// `{"control":"status","status":"busy"|"idle"}`: report this status.
    Status(Status),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadLine {
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("neither \"action\" (a frame) nor \"control\" (for switchboard-host) is a string")]
    NoAction,
    #[error("\"identify\" is switchboard-host's own frame")]
    Identify,
    #[error("{0} bytes, over the 32768-byte limit of one WebSocket frame")]
    TooBig(usize),
    #[error("unknown control {0:?} (known: \"status\")")]
    UnknownControl(String),
    #[error("status must be \"busy\" or \"idle\"")]
    BadStatus,
}

/// One line (without its newline) as a request; `Ok(None)` for a blank line.
pub fn parse(line: &[u8]) -> Result<Option<Request>, BadLine> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if line.len() > MAX_LINE_BYTES {
        return Err(BadLine::TooBig(line.len()));
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| BadLine::NotJson(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(BadLine::NotObject);
    };
    if let Some(control) = object.get("control") {
        let control = control.as_str().ok_or(BadLine::NoAction)?;
        if control != "status" {
            return Err(BadLine::UnknownControl(control.chars().take(64).collect()));
        }
        return object
            .get("status")
            .and_then(Value::as_str)
            .and_then(Status::parse)
            .map(|status| Some(Request::Status(status)))
            .ok_or(BadLine::BadStatus);
    }
    match object.get("action").and_then(Value::as_str) {
        None => Err(BadLine::NoAction),
        Some("identify") => Err(BadLine::Identify),
        Some(_) => {
            let frame = value.to_string();
            if frame.len() > MAX_FRAME_BYTES {
                return Err(BadLine::TooBig(frame.len()));
            }
            Ok(Some(Request::Frame(frame)))
        }
    }
}

/// The next line (without `\n` or `\r\n`), or `None` at the end of input. A line longer than
/// `max` is consumed but not kept: it comes back as its length only (`Err`).
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut line = Vec::new();
    let mut length = 0usize;
    let mut kept = true;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            if length == 0 {
                return Ok(None);
            }
            break;
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let chunk = &buffer[..newline.unwrap_or(buffer.len())];
        length += chunk.len();
        if kept && length <= max {
            line.extend_from_slice(chunk);
        } else {
            kept = false;
            line = Vec::new();
        }
        let consumed = newline.map_or(buffer.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            break;
        }
    }
    if !kept {
        return Ok(Some(Err(length)));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Ok(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pass_compact_and_controls_are_for_the_agent() {
        assert_eq!(
            parse(br#"{ "action": "handshake", "data": {"receiver": "v"} }"#),
            Ok(Some(Request::Frame(
                r#"{"action":"handshake","data":{"receiver":"v"}}"#.into()
            )))
        );
        assert_eq!(
            parse(br#"{"control":"status","status":"busy"}"#),
            Ok(Some(Request::Status(Status::Busy)))
        );
        assert_eq!(parse(b"   "), Ok(None));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(matches!(parse(b"hello"), Err(BadLine::NotJson(_))));
        assert_eq!(parse(b"[1]"), Err(BadLine::NotObject));
        assert_eq!(parse(br#"{"type":"answer"}"#), Err(BadLine::NoAction));
        assert_eq!(
            parse(br#"{"action":"identify","data":{}}"#),
            Err(BadLine::Identify)
        );
        assert_eq!(
            parse(br#"{"control":"status","status":"away"}"#),
            Err(BadLine::BadStatus)
        );
        assert_eq!(
            parse(br#"{"control":"reboot"}"#),
            Err(BadLine::UnknownControl("reboot".into()))
        );
        let big = format!(
            r#"{{"action":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(parse(big.as_bytes()), Err(BadLine::TooBig(big.len())));
    }

    #[tokio::test]
    async fn an_endless_line_is_dropped_and_the_next_one_read() {
        let input = format!("{}\r\nnext\n", "y".repeat(100));
        let mut reader = tokio::io::BufReader::with_capacity(16, input.as_bytes());
        assert_eq!(next_line(&mut reader, 50).await.unwrap(), Some(Err(101)));
        assert_eq!(
            next_line(&mut reader, 50).await.unwrap(),
            Some(Ok(b"next".to_vec()))
        );
        assert_eq!(next_line(&mut reader, 50).await.unwrap(), None);
    }
}
