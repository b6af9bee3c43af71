//! The documents as the contract: every HTTP response a test gets through `TestStack::call` is
//! checked against `docs/openapi.yaml` for its (method, route, status), and every frame a `Peer`
//! receives against the outbound messages of `docs/asyncapi.yaml`. A response or frame the
//! documents do not describe fails the test that got it.
//!
//! Each document is read once per test binary; a schema is compiled the first time it is
//! needed and kept. A schema is compiled with the whole document as its root (its own keys are
//! unknown keywords to JSON Schema) plus a `$ref` to the schema's place in it, so the
//! document's own `#/components/...` references resolve as written.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

pub fn docs_dir() -> PathBuf {
    switchboard_local::workspace_root().join("docs")
}

/// A YAML document as JSON.
pub fn load_yaml(name: &str) -> Value {
    let path = docs_dir().join(name);
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&raw).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// `~` and `/` escaped for a JSON pointer segment.
pub fn pointer_segment(raw: &str) -> String {
    raw.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: characters a fragment may not hold (the `{}` of path
/// templates) percent-encoded.
fn uri_fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || "#/~-._!$&'()*+,;=:@".contains(c) {
            out.push(c);
        } else {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// Validators compiled against one document, by JSON pointer, each once.
struct Schemas {
    document: Value,
    compiled: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Schemas {
    fn new(document: Value) -> Self {
        Self {
            document,
            compiled: Mutex::default(),
        }
    }

    /// The validator for the schema at `pointer` (`#/...`) in the document.
    fn validator(&self, pointer: &str) -> Arc<Validator> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(validator) = compiled.get(pointer) {
            return validator.clone();
        }
        let mut root = self.document.clone();
        if let Value::Object(map) = &mut root {
            map.insert("$ref".into(), Value::String(uri_fragment(pointer)));
        }
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
        let validator = Arc::new(validator);
        compiled.insert(pointer.to_string(), validator.clone());
        validator
    }

    /// Every way `instance` violates the schema at `pointer`, one per line; empty when valid.
    fn violations(&self, pointer: &str, instance: &Value) -> Vec<String> {
        let validator = self.validator(pointer);
        validator
            .iter_errors(instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("at {:?}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect()
    }
}

/// One operation of the OpenAPI document.
#[derive(Clone, Debug)]
pub struct Operation {
    pub method: String,
    pub path: String,
    pub pending: bool,
    /// status → the response object's pointer (after following a `$ref` to components).
    responses: HashMap<String, String>,
}

impl Operation {
    /// Whether a request path (no query) is this operation's path template.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let wanted: Vec<&str> = self.path.split('/').collect();
        let got: Vec<&str> = path.split('/').collect();
        wanted.len() == got.len()
            && wanted.iter().zip(&got).all(|(w, g)| {
                if w.starts_with('{') && w.ends_with('}') {
                    !g.is_empty()
                } else {
                    w == g
                }
            })
    }
}

pub struct HttpContract {
    schemas: Schemas,
    pub operations: Vec<Operation>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "patch", "delete", "head", "options"];

impl HttpContract {
    pub fn load() -> Self {
        let document = load_yaml("openapi.yaml");
        let mut operations = Vec::new();
        let paths = document["paths"]
            .as_object()
            .expect("openapi.yaml has paths");
        for (path, item) in paths {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let base = format!("#/paths/{}/{method}/responses", pointer_segment(path));
                let mut responses = HashMap::new();
                for (status, response) in operation["responses"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} has no responses"))
                {
                    let pointer = match response.get("$ref").and_then(Value::as_str) {
                        Some(reference) => reference.to_string(),
                        None => format!("{base}/{}", pointer_segment(status)),
                    };
                    responses.insert(status.clone(), pointer);
                }
                operations.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    pending: operation
                        .get("x-switchboard-pending")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    responses,
                });
            }
        }
        Self {
            schemas: Schemas::new(document),
            operations,
        }
    }

    pub fn get() -> &'static Self {
        static CONTRACT: OnceLock<HttpContract> = OnceLock::new();
        CONTRACT.get_or_init(Self::load)
    }

    pub fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.matches(method, path))
    }

    fn resolve<'a>(&'a self, pointer: &str) -> &'a Value {
        self.schemas
            .document
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("openapi.yaml has nothing at {pointer}"))
    }

    /// Every way a response breaks the document, one per line; empty when it conforms.
    /// `headers` are lower-case names; `body` is the parsed JSON (a string when it was not
    /// JSON, Null when empty).
    pub fn check(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        headers: &[(String, String)],
        body: &Value,
    ) -> Result<(), String> {
        let path = path_and_query.split('?').next().unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(operation) = self.operation(method, path) else {
            // The gateway's own answer to a route no operation declares.
            return if status == 404 && *body == json!({ "message": "Not Found" }) {
                Ok(())
            } else {
                Err(format!(
                    "{method} {path} is no operation of docs/openapi.yaml, yet it answered \
                     {status} {body} (only the gateway's 404 {{\"message\": \"Not Found\"}} is \
                     expected there)"
                ))
            };
        };
        let route = format!("{} {}", operation.method, operation.path);
        let Some(pointer) = operation.responses.get(&status.to_string()) else {
            let mut documented: Vec<&String> = operation.responses.keys().collect();
            documented.sort();
            return Err(format!(
                "{method} {path} answered {status} {body}, but docs/openapi.yaml documents \
                 only {documented:?} for {route}"
            ));
        };
        let response = self.resolve(pointer);
        let mut problems = Vec::new();
        if let Some(documented) = response.get("headers").and_then(Value::as_object) {
            for (name, entry) in documented {
                // A header given inline, or as a `$ref` to components.headers.
                let (spec, schema_pointer) = match entry.get("$ref").and_then(Value::as_str) {
                    Some(reference) => (self.resolve(reference), format!("{reference}/schema")),
                    None => (
                        entry,
                        format!("{pointer}/headers/{}/schema", pointer_segment(name)),
                    ),
                };
                match header(&name.to_ascii_lowercase()) {
                    None if spec["required"] == true => {
                        problems.push(format!("header {name} is missing"))
                    }
                    None => {}
                    Some(value) => {
                        // A header is text; one that reads as an integer is checked as one.
                        let typed = value
                            .parse::<i64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| Value::String(value.to_string()));
                        for v in self.schemas.violations(&schema_pointer, &typed) {
                            problems.push(format!("header {name}: {v}"));
                        }
                    }
                }
            }
        }
        match response.get("content").and_then(Value::as_object) {
            None => {
                if !body.is_null() {
                    problems.push(format!("a body where none is documented: {body}"));
                }
            }
            Some(content) => {
                let content_type = header("content-type").unwrap_or_default();
                let Some(media) = content
                    .keys()
                    .find(|m| content_type.starts_with(m.as_str()))
                else {
                    return Err(format!(
                        "{method} {path} answered {status} with content-type {content_type:?}; \
                         docs/openapi.yaml documents {:?} for {route}",
                        content.keys().collect::<Vec<_>>()
                    ));
                };
                if content[media].get("schema").is_some() {
                    let schema = format!("{pointer}/content/{}/schema", pointer_segment(media));
                    problems.extend(self.schemas.violations(&schema, body));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} answered {status} {body}, which breaks docs/openapi.yaml \
                 ({route} {status}):\n  {}",
                problems.join("\n  ")
            ))
        }
    }
}

/// The outbound frames of the AsyncAPI document: `OutboundFrame` (a oneOf), and each of its
/// members by the `type` it has.
pub struct FrameContract {
    schemas: Schemas,
    by_type: HashMap<String, String>,
}

pub const OUTBOUND: &str = "#/components/schemas/OutboundFrame";

impl FrameContract {
    pub fn load() -> Self {
        let document = load_yaml("asyncapi.yaml");
        let mut by_type = HashMap::new();
        let members = document
            .pointer("/components/schemas/OutboundFrame/oneOf")
            .and_then(Value::as_array)
            .expect("asyncapi.yaml has components.schemas.OutboundFrame.oneOf");
        for member in members {
            let reference = member["$ref"]
                .as_str()
                .expect("OutboundFrame's members are $refs");
            let schema = document
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("asyncapi.yaml has nothing at {reference}"));
            let kind = &schema["properties"]["type"];
            let types: Vec<&str> = match (kind.get("const"), kind.get("enum")) {
                (Some(Value::String(one)), _) => vec![one],
                (_, Some(Value::Array(many))) => many.iter().filter_map(Value::as_str).collect(),
                _ => panic!("{reference} has no properties.type const or enum"),
            };
            for t in types {
                by_type.insert(t.to_string(), reference.to_string());
            }
        }
        Self {
            schemas: Schemas::new(document),
            by_type,
        }
    }

    pub fn get() -> &'static Self {
        static CONTRACT: OnceLock<FrameContract> = OnceLock::new();
        CONTRACT.get_or_init(Self::load)
    }

    pub fn types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        types.sort();
        types
    }

    /// Whether `frame` is one of the outbound messages; else why not.
    pub fn check(&self, frame: &Value) -> Result<(), String> {
        let whole = self.schemas.violations(OUTBOUND, frame);
        if whole.is_empty() {
            return Ok(());
        }
        let Some(kind) = frame.get("type").and_then(Value::as_str) else {
            return Err(format!(
                "frame {frame} has no string `type`; every outbound frame of docs/asyncapi.yaml has one"
            ));
        };
        let Some(pointer) = self.by_type.get(kind) else {
            return Err(format!(
                "frame {frame} has type {kind:?}, which no outbound message of docs/asyncapi.yaml \
                 has (known: {:?})",
                self.types()
            ));
        };
        let problems = self.schemas.violations(pointer, frame);
        if problems.is_empty() {
            Err(format!(
                "frame {frame} matches more than one outbound message of docs/asyncapi.yaml: {}",
                whole.join("; ")
            ))
        } else {
            Err(format!(
                "frame {frame} breaks docs/asyncapi.yaml ({pointer}):\n  {}",
                problems.join("\n  ")
            ))
        }
    }
}

/// A response as the checks see it, from a reqwest response's parts.
pub fn header_list(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
