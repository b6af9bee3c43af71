//! Static pages the local stack serves beside the HTTP API (the demo and the built SDK it
//! imports), read from disk.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Pages {
    root: PathBuf,
    prefix: &'static str,
}

impl Pages {
    pub fn new(root: PathBuf, prefix: &'static str) -> Self {
        Self { root, prefix }
    }

    /// The page for `path` when it is under the prefix (`/demo/...`).
    pub fn get(&self, path: &str) -> Option<Response> {
        let rest = path.strip_prefix(self.prefix)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        if rest.is_empty() {
            return Some(
                (
                    StatusCode::MOVED_PERMANENTLY,
                    [("location", format!("{}/", self.prefix))],
                )
                    .into_response(),
            );
        }
        let name = match rest.trim_start_matches('/') {
            "" => "index.html",
            other => other,
        };
        if name
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'))
        {
            return Some(StatusCode::NOT_FOUND.into_response());
        }
        let content_type = match name.rsplit('.').next() {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            Some("map") | Some("json") => "application/json",
            Some("ts") => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        };
        Some(match std::fs::read(self.root.join(name)) {
            Ok(bytes) => (
                [
                    ("content-type", content_type),
                    ("cache-control", "no-store"),
                ],
                bytes,
            )
                .into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        })
    }
}
