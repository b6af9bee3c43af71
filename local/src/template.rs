//! Reads what the local stack serves from `template.yaml`, the only place tables and routes
//! are declared: DynamoDB tables, HTTP API events, and WebSocket routes resolved through
//! Route → Integration → Function → `Metadata.BuildProperties.Binary`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_norway::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
    #[error("creating table {0}: {1}")]
    Create(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
    pub function: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WsRoute {
    pub route_key: String,
    pub function: String,
}

#[derive(Clone, Debug)]
pub struct Template {
    doc: Value,
}

fn shape(message: impl Into<String>) -> TemplateError {
    TemplateError::Shape(message.into())
}

/// The plain string inside a value, seeing through `!Sub "..."`.
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Tagged(tagged) => text(&tagged.value),
        _ => None,
    }
}

/// `${Name}` or `${Name.Attr}` references in a `!Sub` string.
fn sub_references(template: &str) -> Vec<&str> {
    template
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split('}').next())
        .map(|r| r.split('.').next().unwrap_or(r))
        .collect()
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let raw = std::fs::read_to_string(path)
            .map_err(|e| TemplateError::Read(path.display().to_string(), e))?;
        Self::parse(&raw)
    }

    pub fn parse(raw: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            doc: serde_norway::from_str(raw)?,
        })
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.as_str()?, v)))
    }

    pub(crate) fn resources_of<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.resources()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }

    pub(crate) fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources()
            .find(|(id, _)| *id == logical_id)
            .map(|(_, r)| r)
    }

    fn binary_of(&self, function_id: &str) -> Result<String, TemplateError> {
        self.resource(function_id)
            .and_then(|f| {
                f.get("Metadata")?
                    .get("BuildProperties")?
                    .get("Binary")?
                    .as_str()
            })
            .map(String::from)
            .ok_or_else(|| {
                shape(format!(
                    "function {function_id} has no Metadata.BuildProperties.Binary"
                ))
            })
    }

    /// A template parameter's `Default`, as a string.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let default = self.doc.get("Parameters")?.get(name)?.get("Default")?;
        match default {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Functions invoked on a schedule: (binary, schedule expression), as EventBridge runs them.
    pub fn schedules(&self) -> Result<Vec<(String, String)>, TemplateError> {
        let mut schedules = Vec::new();
        for (id, function) in self.resources_of("AWS::Serverless::Function") {
            let events = function
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for (_, event) in events.into_iter().flatten() {
                if event.get("Type").and_then(Value::as_str) != Some("Schedule") {
                    continue;
                }
                let expression = event
                    .get("Properties")
                    .and_then(|p| p.get("Schedule"))
                    .and_then(text)
                    .ok_or_else(|| shape(format!("{id}: Schedule event without Schedule")))?;
                schedules.push((self.binary_of(id)?, expression.to_string()));
            }
        }
        schedules.sort();
        Ok(schedules)
    }

    pub fn http_routes(&self) -> Result<Vec<HttpRoute>, TemplateError> {
        let mut routes = Vec::new();
        for (id, function) in self.resources_of("AWS::Serverless::Function") {
            let events = function
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            for (_, event) in events.into_iter().flatten() {
                if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let props = event
                    .get("Properties")
                    .ok_or_else(|| shape(format!("{id}: HttpApi event without Properties")))?;
                let field = |name: &str| {
                    props
                        .get(name)
                        .and_then(Value::as_str)
                        .map(String::from)
                        .ok_or_else(|| shape(format!("{id}: HttpApi event without {name}")))
                };
                routes.push(HttpRoute {
                    method: field("Method")?.to_uppercase(),
                    path: field("Path")?,
                    function: self.binary_of(id)?,
                });
            }
        }
        routes.sort();
        Ok(routes)
    }

    pub fn ws_routes(&self) -> Result<Vec<WsRoute>, TemplateError> {
        let mut routes = Vec::new();
        for (id, route) in self.resources_of("AWS::ApiGatewayV2::Route") {
            let props = route
                .get("Properties")
                .ok_or_else(|| shape(format!("{id}: no Properties")))?;
            let route_key = props
                .get("RouteKey")
                .and_then(Value::as_str)
                .ok_or_else(|| shape(format!("{id}: no RouteKey")))?;
            let target = props
                .get("Target")
                .and_then(text)
                .ok_or_else(|| shape(format!("{id}: no Target")))?;
            let integration_id = *sub_references(target)
                .first()
                .ok_or_else(|| shape(format!("{id}: Target names no integration")))?;
            let uri = self
                .resource(integration_id)
                .and_then(|i| i.get("Properties")?.get("IntegrationUri"))
                .and_then(text)
                .ok_or_else(|| shape(format!("{integration_id}: no IntegrationUri")))?;
            let function_id = sub_references(uri)
                .into_iter()
                .find(|r| self.resource(r).is_some())
                .ok_or_else(|| {
                    shape(format!(
                        "{integration_id}: IntegrationUri names no function"
                    ))
                })?;
            routes.push(WsRoute {
                route_key: route_key.to_string(),
                function: self.binary_of(function_id)?,
            });
        }
        routes.sort();
        Ok(routes)
    }

    /// Every function: its logical id and the binary it builds.
    pub fn functions(&self) -> Result<Vec<(String, String)>, TemplateError> {
        let mut functions = Vec::new();
        for (id, _) in self.resources_of("AWS::Serverless::Function") {
            functions.push((id.to_string(), self.binary_of(id)?));
        }
        functions.sort();
        Ok(functions)
    }

    /// The WebSocket API's `RouteSelectionExpression` as a path into the frame's JSON body:
    /// `$request.body.action` is `["action"]`. Other kinds of expression (headers, context)
    /// are not served locally and are refused.
    pub fn ws_route_selection(&self) -> Result<Vec<String>, TemplateError> {
        let apis: Vec<_> = self
            .resources_of("AWS::ApiGatewayV2::Api")
            .filter(|(_, api)| {
                api.get("Properties")
                    .and_then(|p| p.get("ProtocolType"))
                    .and_then(Value::as_str)
                    == Some("WEBSOCKET")
            })
            .collect();
        let [(id, api)] = apis.as_slice() else {
            return Err(shape(format!(
                "expected one WebSocket API (AWS::ApiGatewayV2::Api, ProtocolType WEBSOCKET), found {}",
                apis.len()
            )));
        };
        let expression = api
            .get("Properties")
            .and_then(|p| p.get("RouteSelectionExpression"))
            .and_then(text)
            .ok_or_else(|| shape(format!("{id}: no RouteSelectionExpression")))?;
        parse_route_selection(expression)
            .ok_or_else(|| shape(format!("{id}: RouteSelectionExpression {expression:?} is not of the form $request.body.<field>[.<field>...]")))
    }

    /// The environment variable names a function gets: Globals merged with its own.
    pub fn environment_of(
        &self,
        binary: &str,
    ) -> Result<std::collections::BTreeSet<String>, TemplateError> {
        Ok(self
            .variables_of(binary)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The function resource that builds `binary`.
    fn function_of(&self, binary: &str) -> Result<&Value, TemplateError> {
        self.resources_of("AWS::Serverless::Function")
            .find(|(id, _)| self.binary_of(id).is_ok_and(|b| b == binary))
            .map(|(_, f)| f)
            .ok_or_else(|| shape(format!("no function builds {binary}")))
    }

    /// Globals' environment variables, then the function's own (which win), unresolved.
    fn variables_of(&self, binary: &str) -> Result<Vec<(String, Value)>, TemplateError> {
        let pairs = |env: Option<&Value>| -> Vec<(String, Value)> {
            env.and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect()
        };
        let mut all = pairs(
            self.doc
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get("Environment")),
        );
        for (name, value) in pairs(
            self.function_of(binary)?
                .get("Properties")
                .and_then(|p| p.get("Environment")),
        ) {
            all.retain(|(n, _)| *n != name);
            all.push((name, value));
        }
        Ok(all)
    }

    /// Template parameters' names.
    /// The template's `Conditions`, by name (evaluated by `Values`).
    pub fn conditions(&self) -> HashMap<String, Value> {
        self.doc
            .get("Conditions")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
            .collect()
    }

    pub fn parameters(&self) -> Vec<String> {
        self.doc
            .get("Parameters")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(k, _)| k.as_str().map(String::from))
            .collect()
    }

    /// The parameter each function variable is set from (`NAME: !Ref Param` or
    /// `NAME: !Join [",", !Ref Param]`), over every function: variable name → parameter.
    pub fn variable_parameters(&self) -> Result<BTreeMap<String, String>, TemplateError> {
        let parameters = self.parameters();
        let mut map = BTreeMap::new();
        for (_, binary) in self.functions()? {
            for (name, value) in self.variables_of(&binary)? {
                if let Some(parameter) = parameter_ref(&value)
                    && parameters.iter().any(|p| p == parameter)
                {
                    map.insert(name, parameter.to_string());
                }
            }
        }
        Ok(map)
    }

    /// The environment the template gives the function that builds `binary`: Globals merged
    /// with its own variables, every value resolved by `values` (parameters, resources,
    /// pseudo parameters).
    pub fn function_environment(
        &self,
        binary: &str,
        values: &Values,
    ) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut environment = BTreeMap::new();
        for (name, value) in self.variables_of(binary)? {
            let resolved = match values.variables.get(&name) {
                Some(fixed) => fixed.clone(),
                None => values
                    .resolve(&value)
                    .map_err(|e| shape(format!("{binary}'s {name}: {e}")))?,
            };
            environment.insert(name, resolved);
        }
        Ok(environment)
    }

    /// Logical ids of the DynamoDB tables.
    pub fn table_ids(&self) -> Vec<String> {
        self.resources_of("AWS::DynamoDB::Table")
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Creates every table (named `<prefix><LogicalId>`) that does not exist yet, with its
    /// keys, indexes and TTL, as declared.
    pub async fn create_tables(&self, client: &Client, prefix: &str) -> Result<(), TemplateError> {
        for (id, table) in self.resources_of("AWS::DynamoDB::Table") {
            let name = format!("{prefix}{id}");
            let props = table
                .get("Properties")
                .ok_or_else(|| shape(format!("{id}: no Properties")))?;
            let create = client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest)
                .set_attribute_definitions(Some(attribute_definitions(id, props)?))
                .set_key_schema(Some(key_schema(id, props.get("KeySchema"))?));
            let mut indexes = Vec::new();
            for index in props
                .get("GlobalSecondaryIndexes")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let index_name = index
                    .get("IndexName")
                    .and_then(Value::as_str)
                    .ok_or_else(|| shape(format!("{id}: index without IndexName")))?;
                let projection = match index
                    .get("Projection")
                    .and_then(|p| p.get("ProjectionType"))
                    .and_then(Value::as_str)
                {
                    Some("KEYS_ONLY") => ProjectionType::KeysOnly,
                    Some("INCLUDE") => ProjectionType::Include,
                    _ => ProjectionType::All,
                };
                indexes.push(
                    GlobalSecondaryIndex::builder()
                        .index_name(index_name)
                        .set_key_schema(Some(key_schema(id, index.get("KeySchema"))?))
                        .projection(Projection::builder().projection_type(projection).build())
                        .build()
                        .map_err(|e| shape(format!("{id}.{index_name}: {e}")))?,
                );
            }
            let create = if indexes.is_empty() {
                create
            } else {
                create.set_global_secondary_indexes(Some(indexes))
            };
            match create.send().await {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(TemplateError::Create(
                        name,
                        switchboard::error::error_chain(&e),
                    ));
                }
            }
            if let Some(ttl) = props.get("TimeToLiveSpecification") {
                let attribute = ttl
                    .get("AttributeName")
                    .and_then(Value::as_str)
                    .unwrap_or("expiresAt");
                client
                    .update_time_to_live()
                    .table_name(&name)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(attribute)
                            .enabled(true)
                            .build()
                            .map_err(|e| shape(e.to_string()))?,
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        TemplateError::Create(name.clone(), switchboard::error::error_chain(&e))
                    })?;
            }
        }
        Ok(())
    }
}

/// The parameter a value names: `!Ref P`, or `!Join [sep, !Ref P]` (a list parameter).
fn parameter_ref(value: &Value) -> Option<&str> {
    let Value::Tagged(tagged) = value else {
        return None;
    };
    if tagged.tag == "Ref" {
        return tagged.value.as_str();
    }
    if tagged.tag == "Join" {
        return parameter_ref(tagged.value.as_sequence()?.get(1)?);
    }
    if tagged.tag == "If" {
        // `!If [CreateNetwork, <made here>, !Join [",", !Ref Subnets]]`: the branch that names a
        // parameter is the one the variable sets.
        let branches = tagged.value.as_sequence()?;
        return branches.iter().skip(1).find_map(parameter_ref);
    }
    None
}

/// What a template's references resolve to: `!Ref` of a parameter or a resource, `${...}` in
/// `!Sub`, `!Join` of a list parameter or of values, and the pseudo parameters.
#[derive(Clone, Debug, Default)]
pub struct Values {
    /// Parameter name → value (list parameters: comma-separated).
    pub parameters: HashMap<String, String>,
    /// Resource logical id → what `!Ref` of it returns.
    pub resources: HashMap<String, String>,
    /// `AWS::Region`, `AWS::AccountId`, `AWS::Partition`, `AWS::StackName`.
    pub pseudo: HashMap<String, String>,
    /// Variable name → value, for variables built from resources that are served differently
    /// here (the WebSocket API's URLs).
    pub variables: HashMap<String, String>,
    /// The template's `Conditions`, evaluated with these values when an `!If` needs one.
    pub conditions: HashMap<String, Value>,
}

impl Values {
    fn name(&self, name: &str) -> Result<String, String> {
        self.parameters
            .get(name)
            .or_else(|| self.resources.get(name))
            .or_else(|| self.pseudo.get(name))
            .cloned()
            .ok_or_else(|| format!("{name} has no value here"))
    }

    /// A condition of the template (`!Equals`, `!Not`, `!And`, `!Or`, `!Condition`), evaluated.
    fn condition(&self, name: &str) -> Result<bool, String> {
        let expression = self
            .conditions
            .get(name)
            .ok_or_else(|| format!("condition {name} is not in the template"))?;
        self.evaluate(expression)
    }

    fn evaluate(&self, expression: &Value) -> Result<bool, String> {
        let Value::Tagged(tagged) = expression else {
            return match expression.get("Condition").and_then(Value::as_str) {
                Some(name) => self.condition(name),
                None => Err(format!("{expression:?} is not a condition")),
            };
        };
        let operands = || {
            tagged
                .value
                .as_sequence()
                .ok_or_else(|| format!("!{} takes a list", tagged.tag))
        };
        match tagged.tag.to_string().trim_start_matches('!') {
            "Equals" => match operands()?.as_slice() {
                [a, b] => Ok(self.resolve(a)? == self.resolve(b)?),
                _ => Err("!Equals takes two values".into()),
            },
            "Not" => match operands()?.as_slice() {
                [a] => Ok(!self.evaluate(a)?),
                _ => Err("!Not takes one condition".into()),
            },
            "And" => operands()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.evaluate(c)?)),
            "Or" => operands()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.evaluate(c)?)),
            "Condition" => {
                self.condition(tagged.value.as_str().ok_or("!Condition of a non-string")?)
            }
            other => Err(format!("!{other} is not a condition here")),
        }
    }

    pub fn resolve(&self, value: &Value) -> Result<String, String> {
        match value {
            Value::Tagged(tagged) if tagged.tag == "If" => {
                let parts = tagged.value.as_sequence().ok_or("!If of a non-list")?;
                let [condition, then, otherwise] = parts.as_slice() else {
                    return Err("!If takes [condition, value, value]".into());
                };
                let name = condition.as_str().ok_or("!If's condition is a name")?;
                self.resolve(if self.condition(name)? {
                    then
                } else {
                    otherwise
                })
            }
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                self.name(tagged.value.as_str().ok_or("!Ref of a non-string")?)
            }
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                let template = tagged.value.as_str().ok_or("!Sub of a non-string")?;
                let mut out = String::new();
                let mut rest = template;
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let after = &rest[start + 2..];
                    let end = after.find('}').ok_or("unclosed ${ in !Sub")?;
                    out.push_str(&self.name(&after[..end])?);
                    rest = &after[end + 1..];
                }
                out.push_str(rest);
                Ok(out)
            }
            Value::Tagged(tagged) if tagged.tag == "Join" => {
                let parts = tagged.value.as_sequence().ok_or("!Join of a non-list")?;
                let [separator, list] = parts.as_slice() else {
                    return Err("!Join takes [separator, list]".into());
                };
                let separator = separator.as_str().ok_or("!Join's separator")?;
                let items: Vec<String> = match list {
                    Value::Sequence(items) => items
                        .iter()
                        .map(|v| self.resolve(v))
                        .collect::<Result<_, _>>()?,
                    other => self
                        .resolve(other)?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                };
                Ok(items.join(separator))
            }
            other => Err(format!("{other:?} is not resolved here")),
        }
    }
}

/// What a deployment would resolve the template's references to: every parameter given
/// (secrets, the VPC, a sessions application in a second region), resources named as
/// CloudFormation names them.
pub fn deployed_values(template: &Template) -> Values {
    let mut values = Values {
        conditions: template.conditions(),
        ..Values::default()
    };
    let given: HashMap<&str, String> = [
        ("HostKeys", "host-key-1,host-key-2".to_string()),
        ("OperatorKeys", "operator-key".to_string()),
        ("TurnSecret", "turn-secret".to_string()),
        (
            "TurnUrls",
            "turn:turn.example.com:3478?transport=udp".to_string(),
        ),
        ("StunUrls", "stun:turn.example.com:3478".to_string()),
        ("Subnets", "subnet-0a1b2c3d,subnet-4e5f6a7b".to_string()),
        ("SecurityGroups", "sg-0a1b2c3d".to_string()),
        (
            "SfuImage",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/sfu:latest".to_string(),
        ),
        ("WarmRooms", "2".to_string()),
        (
            "Locations",
            serde_json::json!({ "eu": {
                "region": "eu-central-1", "cluster": "switchboard-eu",
                "subnets": ["subnet-9a8b7c6d"], "securityGroups": ["sg-9a8b7c6d"],
                "ips": ["198.51.100.7"],
            }})
            .to_string(),
        ),
        (
            "Applications",
            serde_json::json!({ "arena": {
                "taskDefinition": "switchboard-arena", "container": "game",
                "ports": [{ "type": "udp", "container": 7777 }],
                "versions": { "v2": "switchboard-arena:2" },
                "warm": { "eu": 1 },
            }})
            .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    for parameter in template.parameters() {
        let value = given
            .get(parameter.as_str())
            .cloned()
            .or_else(|| template.parameter_default(&parameter))
            .unwrap_or_default();
        values.parameters.insert(parameter, value);
    }
    for id in template.table_ids() {
        values
            .resources
            .insert(id.clone(), format!("switchboard-{id}-1A2B3C4D5E6F"));
    }
    for (id, value) in [
        ("SfuCluster", "switchboard-SfuCluster-7G8H9I0J"),
        (
            "SfuTaskDefinition",
            "arn:aws:ecs:us-east-1:123456789012:task-definition/switchboard-sfu:1",
        ),
        ("WebSocketApi", "a1b2c3d4e5"),
    ] {
        values.resources.insert(id.into(), value.into());
    }
    for (name, value) in [
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", "123456789012"),
        ("AWS::Partition", "aws"),
        ("AWS::StackName", "switchboard"),
    ] {
        values.pseudo.insert(name.into(), value.into());
    }
    values
}

/// What Lambda itself puts in a `provided.al2023` function's environment.
pub fn lambda_variables(function: &str, runtime_api: &str) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret"),
        ("AWS_SESSION_TOKEN", "example-token"),
        ("_HANDLER", "bootstrap"),
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `$request.body.a.b` → `["a", "b"]`.
pub fn parse_route_selection(expression: &str) -> Option<Vec<String>> {
    let path = expression.trim().strip_prefix("$request.body.")?;
    let fields: Vec<String> = path.split('.').map(String::from).collect();
    fields
        .iter()
        .all(|f| {
            !f.is_empty()
                && f.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
        .then_some(fields)
}

fn attribute_definitions(
    id: &str,
    props: &Value,
) -> Result<Vec<AttributeDefinition>, TemplateError> {
    props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape(format!("{id}: no AttributeDefinitions")))?
        .iter()
        .map(|a| {
            let name = a.get("AttributeName").and_then(Value::as_str);
            let kind = a.get("AttributeType").and_then(Value::as_str);
            match (name, kind) {
                (Some(name), Some(kind)) => AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::from(kind))
                    .build()
                    .map_err(|e| shape(format!("{id}: {e}"))),
                _ => Err(shape(format!("{id}: malformed AttributeDefinitions"))),
            }
        })
        .collect()
}

fn key_schema(id: &str, schema: Option<&Value>) -> Result<Vec<KeySchemaElement>, TemplateError> {
    schema
        .and_then(Value::as_sequence)
        .ok_or_else(|| shape(format!("{id}: no KeySchema")))?
        .iter()
        .map(|k| {
            let name = k.get("AttributeName").and_then(Value::as_str);
            let kind = k.get("KeyType").and_then(Value::as_str);
            match (name, kind) {
                (Some(name), Some(kind)) => KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(KeyType::from(kind))
                    .build()
                    .map_err(|e| shape(format!("{id}: {e}"))),
                _ => Err(shape(format!("{id}: malformed KeySchema"))),
            }
        })
        .collect()
}
