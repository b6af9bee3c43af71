//! IAM from `template.yaml`, enforced by the local stack's endpoints.
//!
//! Each function runs with its own credentials, whose access key id is the function's logical
//! id in the template (as each Lambda has its own role). The DynamoDB proxy, the ECS endpoint
//! and the `@connections` endpoint read the principal from the SigV4 `Authorization` header
//! and judge the call against that function's policy statements: an explicit Deny wins, then
//! any Allow whose action, resource and conditions match; anything else is AccessDenied, as
//! deployed. Signatures are not verified (every local credential is public anyway).
//!
//! Policies are the `Statement`s of each function's `Policies`; `!Sub`, `!Ref`, `!GetAtt` and
//! `!Join` resolve to the local stack's names (prefixed tables, the local cluster, task
//! definition and WebSocket API). SAM policy templates (`DynamoDBCrudPolicy`, ...) and managed
//! policies are refused: the template grants exactly what each function calls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use serde_norway::Value;

use crate::template::{Template, TemplateError};

pub const PARTITION: &str = "aws";
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";
/// The stack's own credentials (creating tables, tests inspecting them): never checked.
pub const ADMIN_ACCESS_KEY: &str = "switchboard-local-admin";

/// The local names the template's references resolve to.
#[derive(Clone, Debug)]
pub struct LocalNames {
    pub table_prefix: String,
    pub cluster: String,
    pub task_definition: String,
    pub ws_api_id: String,
    pub ws_stage: String,
}

impl LocalNames {
    pub fn table_arn(&self, table: &str) -> String {
        if table.starts_with("arn:") {
            return table.to_string();
        }
        format!("arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
    }

    pub fn cluster_arn(&self, cluster: &str) -> String {
        if cluster.starts_with("arn:") {
            return cluster.to_string();
        }
        format!("arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}")
    }

    /// A task definition named by ARN, `family` or `family:revision`; a bare family is its
    /// latest revision, the configured one's (else 1).
    pub fn task_definition_arn(&self, requested: &str) -> String {
        if requested.starts_with("arn:") {
            return requested.to_string();
        }
        let configured_revision = self
            .task_definition
            .rsplit('/')
            .next()
            .and_then(|d| d.split_once(':'))
            .map_or("1", |(_, r)| r);
        let (family, revision) = requested
            .split_once(':')
            .unwrap_or((requested, configured_revision));
        format!("arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
    }

    fn cluster_name<'a>(&self, cluster: &'a str) -> &'a str {
        cluster.rsplit('/').next().unwrap_or(cluster)
    }

    pub fn task_arn(&self, cluster: &str, task: &str) -> String {
        if task.starts_with("arn:") {
            return task.to_string();
        }
        format!(
            "arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task/{}/{task}",
            self.cluster_name(cluster)
        )
    }

    pub fn connection_arn(&self, method: &str, connection_id: &str) -> String {
        format!(
            "arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:{}/{}/{method}/@connections/{connection_id}",
            self.ws_api_id, self.ws_stage
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug)]
struct Condition {
    operator: String,
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Debug)]
struct Statement {
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// One call as IAM sees it: an action on a resource, with the request's condition keys.
#[derive(Clone, Debug)]
pub struct Call {
    pub action: String,
    pub resource: String,
    pub context: Vec<(String, String)>,
}

impl Call {
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.context.push((key.to_string(), value.into()));
        self
    }
}

/// A refused call, with AWS's message.
#[derive(Clone, Debug)]
pub struct Denied {
    pub message: String,
}

pub struct Iam {
    enforce: bool,
    names: LocalNames,
    /// Statements by function logical id.
    policies: HashMap<String, Vec<Statement>>,
}

fn shape(message: impl Into<String>) -> TemplateError {
    TemplateError::Shape(message.into())
}

impl Iam {
    pub fn from_template(
        template: &Template,
        names: LocalNames,
        enforce: bool,
    ) -> Result<Self, TemplateError> {
        let resolver = Resolver {
            template,
            names: &names,
        };
        let mut policies = HashMap::new();
        for (id, function) in template.resources_of("AWS::Serverless::Function") {
            let props = function.get("Properties");
            if props.and_then(|p| p.get("Role")).is_some() {
                return Err(shape(format!(
                    "{id}: a Role is not checked locally; give the function Policies with Statements"
                )));
            }
            let mut statements = Vec::new();
            let documents = match props.and_then(|p| p.get("Policies")) {
                None => Vec::new(),
                Some(Value::Sequence(items)) => items.iter().collect(),
                Some(other) => vec![other],
            };
            for document in documents {
                statements.extend(parse_document(id, document, &resolver)?);
            }
            policies.insert(id.to_string(), statements);
        }
        Ok(Self {
            enforce,
            names,
            policies,
        })
    }

    pub fn names(&self) -> &LocalNames {
        &self.names
    }

    pub fn enforced(&self) -> bool {
        self.enforce
    }

    /// The function logical ids the template declares.
    pub fn functions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.policies.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every action a function's Allow statements name, with their resources, as
    /// `action resource` lines (sorted): what a test pins.
    pub fn granted(&self, function: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .policies
            .get(function)
            .into_iter()
            .flatten()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(|s| {
                s.actions.iter().flat_map(move |a| {
                    s.resources.iter().map(move |r| {
                        let conditions: Vec<String> = s
                            .conditions
                            .iter()
                            .map(|c| format!(" if {} {} {:?}", c.key, c.operator, c.values))
                            .collect();
                        format!("{a} {r}{}", conditions.concat())
                    })
                })
            })
            .collect();
        lines.sort();
        lines.dedup();
        lines
    }

    /// Whether `principal` (an access key id) may make `call`.
    pub fn check(&self, principal: Option<&str>, call: &Call) -> Result<(), Denied> {
        if !self.enforce || principal == Some(ADMIN_ACCESS_KEY) {
            return Ok(());
        }
        let who = principal.unwrap_or("anonymous");
        let Some(statements) = self.policies.get(who) else {
            return Err(Denied {
                message: format!(
                    "User: arn:{PARTITION}:iam::{ACCOUNT}:user/{who} is not authorized to perform: {} on resource: {} because no identity-based policy allows the {} action",
                    call.action, call.resource, call.action
                ),
            });
        };
        let user = format!("arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/{who}Role/{who}");
        let matching = |effect: Effect| {
            statements
                .iter()
                .filter(|s| s.effect == effect)
                .any(|s| s.matches(call))
        };
        if matching(Effect::Deny) {
            return Err(Denied {
                message: format!(
                    "User: {user} is not authorized to perform: {} on resource: {} with an explicit deny in an identity-based policy",
                    call.action, call.resource
                ),
            });
        }
        if matching(Effect::Allow) {
            return Ok(());
        }
        Err(Denied {
            message: format!(
                "User: {user} is not authorized to perform: {} on resource: {} because no identity-based policy allows the {} action",
                call.action, call.resource, call.action
            ),
        })
    }

    pub fn check_all(&self, principal: Option<&str>, calls: &[Call]) -> Result<(), Denied> {
        calls.iter().try_for_each(|c| self.check(principal, c))
    }
}

impl Statement {
    fn matches(&self, call: &Call) -> bool {
        self.actions
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &call.action.to_ascii_lowercase()))
            && self.resources.iter().any(|r| glob(r, &call.resource))
            && self.conditions.iter().all(|c| c.holds(call))
    }
}

impl Condition {
    fn holds(&self, call: &Call) -> bool {
        let values: Vec<&str> = call
            .context
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            return false;
        }
        values.iter().all(|value| {
            self.values
                .iter()
                .any(|wanted| match self.operator.as_str() {
                    "StringEquals" | "ArnEquals" => wanted == value,
                    "StringEqualsIgnoreCase" => wanted.eq_ignore_ascii_case(value),
                    // IAM's ArnEquals and ArnLike both allow wildcards; StringLike too.
                    "StringLike" | "ArnLike" => glob(wanted, value),
                    _ => false,
                })
        })
    }
}

/// IAM wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

const SUPPORTED_OPERATORS: &[&str] = &[
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "ArnEquals",
    "ArnLike",
];

fn parse_document(
    function: &str,
    document: &Value,
    resolver: &Resolver,
) -> Result<Vec<Statement>, TemplateError> {
    let Some(mapping) = document.as_mapping() else {
        return Err(shape(format!(
            "{function}: policy {document:?} is a managed policy or SAM policy template name; \
             the local stack checks explicit Statements only"
        )));
    };
    let mut statements = Vec::new();
    for (key, body) in mapping {
        match key.as_str() {
            Some("Statement") => {
                let items = match body {
                    Value::Sequence(items) => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    statements.push(parse_statement(function, item, resolver)?);
                }
            }
            Some("Version") => {}
            Some(other) => {
                return Err(shape(format!(
                    "{function}: policy {other} is a SAM policy template, which grants more than \
                     the function calls; write explicit Statements (the local stack enforces \
                     those only)"
                )));
            }
            None => return Err(shape(format!("{function}: malformed policy"))),
        }
    }
    Ok(statements)
}

fn parse_statement(
    function: &str,
    statement: &Value,
    resolver: &Resolver,
) -> Result<Statement, TemplateError> {
    let field = |name: &str| statement.get(name);
    for unsupported in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
        if field(unsupported).is_some() {
            return Err(shape(format!(
                "{function}: {unsupported} in a statement is not checked locally"
            )));
        }
    }
    let effect = match field("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => {
            return Err(shape(format!(
                "{function}: statement Effect {other:?} is neither Allow nor Deny"
            )));
        }
    };
    let actions = resolver.strings(
        field("Action").ok_or_else(|| shape(format!("{function}: statement without Action")))?,
    )?;
    let resources = resolver.strings(
        field("Resource")
            .ok_or_else(|| shape(format!("{function}: statement without Resource")))?,
    )?;
    let mut conditions = Vec::new();
    if let Some(block) = field("Condition") {
        let block = block
            .as_mapping()
            .ok_or_else(|| shape(format!("{function}: Condition is not a mapping")))?;
        for (operator, tests) in block {
            let operator = operator.as_str().unwrap_or_default().to_string();
            if !SUPPORTED_OPERATORS.contains(&operator.as_str()) {
                return Err(shape(format!(
                    "{function}: condition operator {operator} is not checked locally"
                )));
            }
            let tests = tests
                .as_mapping()
                .ok_or_else(|| shape(format!("{function}: {operator} is not a mapping")))?;
            for (key, values) in tests {
                conditions.push(Condition {
                    operator: operator.clone(),
                    key: key.as_str().unwrap_or_default().to_string(),
                    values: resolver.strings(values)?,
                });
            }
        }
    }
    Ok(Statement {
        effect,
        actions,
        resources,
        conditions,
    })
}

/// Resolves intrinsic functions to the local stack's names.
struct Resolver<'a> {
    template: &'a Template,
    names: &'a LocalNames,
}

impl Resolver<'_> {
    fn strings(&self, value: &Value) -> Result<Vec<String>, TemplateError> {
        match value {
            Value::Sequence(items) => {
                let mut all = Vec::new();
                for item in items {
                    all.extend(self.strings(item)?);
                }
                Ok(all)
            }
            other => Ok(vec![self.string(other)?]),
        }
    }

    fn string(&self, value: &Value) -> Result<String, TemplateError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(m) if m.len() == 1 => {
                let (key, inner) = m.iter().next().ok_or_else(|| shape("empty mapping"))?;
                let name = key.as_str().unwrap_or_default();
                let function = name.strip_prefix("Fn::").unwrap_or(name);
                self.intrinsic(function, inner)
            }
            other => Err(shape(format!("cannot resolve {other:?} locally"))),
        }
    }

    fn intrinsic(&self, function: &str, argument: &Value) -> Result<String, TemplateError> {
        match (function, argument) {
            ("Ref", Value::String(name)) => self.reference(name),
            ("GetAtt", Value::String(path)) => {
                let (resource, attribute) = path
                    .split_once('.')
                    .ok_or_else(|| shape(format!("!GetAtt {path}: no attribute")))?;
                self.attribute(resource, attribute)
            }
            ("GetAtt", Value::Sequence(parts)) if parts.len() == 2 => {
                let resource = self.string(&parts[0])?;
                let attribute = self.string(&parts[1])?;
                self.attribute(&resource, &attribute)
            }
            ("Sub", Value::String(text)) => self.sub(text, &HashMap::new()),
            ("Sub", Value::Sequence(parts)) if parts.len() == 2 => {
                let text = self.string(&parts[0])?;
                let mut variables = HashMap::new();
                for (k, v) in parts[1].as_mapping().into_iter().flatten() {
                    variables.insert(k.as_str().unwrap_or_default().to_string(), self.string(v)?);
                }
                self.sub(&text, &variables)
            }
            ("Join", Value::Sequence(parts)) if parts.len() == 2 => {
                let delimiter = self.string(&parts[0])?;
                Ok(self.strings(&parts[1])?.join(&delimiter))
            }
            (other, _) => Err(shape(format!(
                "intrinsic {other} is not resolved by the local stack's IAM check"
            ))),
        }
    }

    fn sub(
        &self,
        text: &str,
        variables: &HashMap<String, String>,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| shape(format!("!Sub {text:?}: unclosed ${{")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(value);
            } else if let Some((resource, attribute)) = name
                .split_once('.')
                .filter(|(r, _)| !r.starts_with("AWS::"))
            {
                out.push_str(&self.attribute(resource, attribute)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn kind(&self, logical_id: &str) -> Option<&str> {
        self.template
            .resource(logical_id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
    }

    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        let names = self.names;
        match name {
            "AWS::Partition" => return Ok(PARTITION.into()),
            "AWS::Region" => return Ok(REGION.into()),
            "AWS::AccountId" => return Ok(ACCOUNT.into()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".into()),
            "AWS::StackName" => return Ok("switchboard-local".into()),
            "StageName" => return Ok(names.ws_stage.clone()),
            _ => {}
        }
        match self.kind(name) {
            Some("AWS::DynamoDB::Table") => Ok(format!("{}{name}", names.table_prefix)),
            Some("AWS::ECS::Cluster") => Ok(names.cluster.clone()),
            Some("AWS::ECS::TaskDefinition") => {
                Ok(names.task_definition_arn(&names.task_definition))
            }
            Some("AWS::ApiGatewayV2::Api") => Ok(names.ws_api_id.clone()),
            Some("AWS::IAM::Role" | "AWS::Serverless::Function") => Ok(name.to_string()),
            Some(other) => Err(shape(format!(
                "!Ref {name} ({other}) has no local value for the IAM check"
            ))),
            // Other parameters take their default, as a deployment that does not set them.
            None => self.template.parameter_default(name).ok_or_else(|| {
                shape(format!(
                    "!Ref {name}: no local value (a parameter without a default, not StageName)"
                ))
            }),
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, TemplateError> {
        let names = self.names;
        match (self.kind(resource), attribute) {
            (Some("AWS::DynamoDB::Table"), "Arn") => {
                Ok(names.table_arn(&format!("{}{resource}", names.table_prefix)))
            }
            (Some("AWS::ECS::Cluster"), "Arn") => Ok(names.cluster_arn(&names.cluster)),
            (Some("AWS::IAM::Role"), "Arn") => {
                Ok(format!("arn:{PARTITION}:iam::{ACCOUNT}:role/{resource}"))
            }
            (Some("AWS::Serverless::Function"), "Arn") => Ok(format!(
                "arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{resource}"
            )),
            (kind, _) => Err(shape(format!(
                "!GetAtt {resource}.{attribute} ({kind:?}) has no local value"
            ))),
        }
    }
}

/// The access key id a SigV4-signed request names (`Credential=<AKID>/...`).
pub fn principal(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    let akid = credential.split('/').next()?.trim();
    (!akid.is_empty()).then(|| akid.to_string())
}

/// The calls one DynamoDB API request makes, as IAM judges them.
pub fn dynamodb_calls(names: &LocalNames, target: &str, body: &Json) -> Vec<Call> {
    let operation = target.rsplit('.').next().unwrap_or(target);
    let table = |v: &Json| {
        names.table_arn(
            v.get("TableName")
                .and_then(Json::as_str)
                .unwrap_or_default(),
        )
    };
    let action = |op: &str| format!("dynamodb:{op}");
    match operation {
        "Query" | "Scan" => {
            let mut resource = table(body);
            if let Some(index) = body.get("IndexName").and_then(Json::as_str) {
                resource = format!("{resource}/index/{index}");
            }
            vec![Call::new(action(operation), resource)]
        }
        "BatchGetItem" | "BatchWriteItem" => body
            .get("RequestItems")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
            .map(|(t, _)| Call::new(action(operation), names.table_arn(t)))
            .collect(),
        "TransactWriteItems" | "TransactGetItems" => body
            .get("TransactItems")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, inner) = item.as_object()?.iter().next()?;
                let op = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    _ => return Some(Call::new(action(kind), table(inner))),
                };
                Some(Call::new(action(op), table(inner)))
            })
            .collect(),
        "ListTables" | "DescribeLimits" | "DescribeEndpoints" => {
            vec![Call::new(action(operation), "*")]
        }
        _ if body.get("TableName").is_some() => vec![Call::new(action(operation), table(body))],
        _ => vec![Call::new(action(operation), "*")],
    }
}

/// The calls one ECS API request makes.
pub fn ecs_calls(names: &LocalNames, target: &str, body: &Json) -> Vec<Call> {
    let operation = target.rsplit('.').next().unwrap_or(target);
    let cluster = body
        .get("cluster")
        .and_then(Json::as_str)
        .unwrap_or("default");
    let cluster_arn = names.cluster_arn(cluster);
    let call = |resource: String| {
        Call::new(format!("ecs:{operation}"), resource).with("ecs:cluster", cluster_arn.clone())
    };
    match operation {
        "RunTask" | "StartTask" => vec![call(
            names.task_definition_arn(
                body.get("taskDefinition")
                    .and_then(Json::as_str)
                    .unwrap_or_default(),
            ),
        )],
        "StopTask" => vec![call(names.task_arn(
            cluster,
            body.get("task").and_then(Json::as_str).unwrap_or_default(),
        ))],
        "DescribeTasks" => body
            .get("tasks")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .map(|t| call(names.task_arn(cluster, t)))
            .collect(),
        // ListTasks is authorized on container instances, scoped by the ecs:cluster key.
        "ListTasks" => vec![call(format!(
            "arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:container-instance/{}/*",
            names.cluster_name(cluster)
        ))],
        _ => vec![Call::new(format!("ecs:{operation}"), "*")],
    }
}

fn denied(status: StatusCode, error_type: &str, content_type: &str, body: Json) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", error_type),
            ("content-type", content_type),
            ("x-amzn-requestid", &uuid::Uuid::new_v4().to_string()),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Largest request body the guards read (DynamoDB's own limit is 16 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Splits a request for judging: its body as bytes, and the request rebuilt for `next`.
async fn buffered(request: Request) -> Result<(Request, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response())?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

/// Guards the ECS endpoint: each request is judged by who signed it.
pub async fn ecs_guard(State(iam): State<Arc<Iam>>, request: Request, next: Next) -> Response {
    let principal = principal(request.headers());
    if crate::ec2::is_ec2(request.headers()) {
        return ec2_guard(&iam, principal, request, next).await;
    }
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (request, bytes) = match buffered(request).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let body = serde_json::from_slice::<Json>(&bytes).unwrap_or(Json::Null);
    let calls = ecs_calls(iam.names(), &target, &body);
    if let Err(d) = iam.check_all(principal.as_deref(), &calls) {
        tracing::warn!(principal, message = d.message, "ECS call denied");
        return denied(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "application/x-amz-json-1.1",
            json!({ "__type": "AccessDeniedException", "message": d.message }),
        );
    }
    next.run(request).await
}

/// EC2 requests on the ECS listener: `ec2:<Action>` on `*` (DescribeNetworkInterfaces has no
/// resource-level permissions), refused as EC2 refuses, `UnauthorizedOperation` with 403.
async fn ec2_guard(iam: &Iam, principal: Option<String>, request: Request, next: Next) -> Response {
    let (request, bytes) = match buffered(request).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let parameters = crate::ec2::parameters(&bytes);
    let call = Call::new(format!("ec2:{}", crate::ec2::action(&parameters)), "*");
    if let Err(d) = iam.check(principal.as_deref(), &call) {
        tracing::warn!(principal, message = d.message, "EC2 call denied");
        return crate::ec2::error(
            StatusCode::FORBIDDEN,
            "UnauthorizedOperation",
            &format!(
                "You are not authorized to perform this operation. {}",
                d.message
            ),
        );
    }
    next.run(request).await
}

/// Guards `@connections/{id}`: `execute-api:ManageConnections` on the stage's
/// `<METHOD>/@connections/<id>`.
pub async fn connections_guard(
    State(iam): State<Arc<Iam>>,
    request: Request,
    next: Next,
) -> Response {
    let principal = principal(request.headers());
    let id = request
        .uri()
        .path()
        .rsplit_once("/@connections/")
        .map(|(_, id)| id.to_string())
        .unwrap_or_default();
    let resource = iam.names().connection_arn(request.method().as_str(), &id);
    let call = Call::new("execute-api:ManageConnections", resource);
    if let Err(d) = iam.check(principal.as_deref(), &call) {
        tracing::warn!(principal, message = d.message, "@connections call denied");
        return denied(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "application/json",
            json!({ "message": d.message }),
        );
    }
    next.run(request).await
}

/// The DynamoDB proxy: judges each request, then forwards it to DynamoDB Local (unchanged but
/// for the access key, see below) and streams the answer back.
pub struct DynamoProxy {
    pub iam: Arc<Iam>,
    pub upstream: String,
    pub client: reqwest::Client,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "host",
    "content-length",
];

pub async fn dynamodb_proxy(State(proxy): State<Arc<DynamoProxy>>, request: Request) -> Response {
    let principal = principal(request.headers());
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response(),
    };
    if let Some(target) = &target {
        let body = serde_json::from_slice::<Json>(&bytes).unwrap_or(Json::Null);
        let calls = dynamodb_calls(proxy.iam.names(), target, &body);
        if let Err(d) = proxy.iam.check_all(principal.as_deref(), &calls) {
            tracing::warn!(principal, message = d.message, "DynamoDB call denied");
            return denied(
                StatusCode::BAD_REQUEST,
                "AccessDeniedException",
                "application/x-amz-json-1.0",
                json!({
                    "__type": "com.amazon.coral.service#AccessDeniedException",
                    "message": d.message,
                }),
            );
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut forward = proxy
        .client
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(bytes);
    for (name, value) in &parts.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        if name == "authorization"
            && let Some(akid) = &principal
        {
            // DynamoDB Local keeps one database per access key id (without -sharedDb): every
            // function must see the stack's tables, so the request goes on under the stack's
            // own key. DynamoDB Local does not verify signatures.
            let rewritten = value.to_str().unwrap_or_default().replacen(
                &format!("Credential={akid}/"),
                &format!("Credential={ADMIN_ACCESS_KEY}/"),
                1,
            );
            forward = forward.header(name, rewritten);
            continue;
        }
        forward = forward.header(name, value);
    }
    let answer = match forward.send().await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(error = %e, "DynamoDB Local did not answer the proxy");
            return denied(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "application/x-amz-json-1.0",
                json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    "message": "DynamoDB Local is unreachable",
                }),
            );
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
