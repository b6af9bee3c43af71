//! The local stack: everything Switchboard needs on 127.0.0.1, with no AWS account and no
//! Docker. The function handlers run their production code; only their endpoints differ.

pub mod dynamodb;
mod ec2;
mod ecs;
mod http_api;
pub mod iam;
mod metrics;
mod pages;
pub mod template;
mod ws_api;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use axum::Router;
use axum::routing::{any, get, post};
use std::collections::BTreeMap;

use switchboard::config::{ConfigError, Need, Tables};
use switchboard::{Clock, Config, Deps, Endpoints};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use ecs::TaskRecord;
pub use http_api::{CORS_HEADERS, CORS_METHODS};
pub use iam::{ADMIN_ACCESS_KEY, Iam};
pub use template::{HttpRoute, Template, WsRoute};
pub use ws_api::{MAX_WS_FRAME_BYTES, MAX_WS_MESSAGE_BYTES, STAGE};

pub const DEFAULT_CLUSTER: &str = "switchboard-local";
pub const DEFAULT_TASK_DEFINITION: &str = "switchboard-sfu";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A function's configuration, from the environment template.yaml gives it, is refused.
    #[error("{function}: {error}")]
    Function {
        function: String,
        error: ConfigError,
    },
    #[error(
        "{0} is set, but the local stack names its tables <prefix><LogicalId> (see --table-prefix)"
    )]
    TableName(String),
    #[error("cannot listen on 127.0.0.1:{0}: {1}")]
    Listen(u16, std::io::Error),
    #[error("template.yaml routes {0} to function {1:?}, which the local stack does not have")]
    UnknownFunction(String, String),
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[derive(Clone, Debug)]
pub struct StackOptions {
    /// 0 picks a free port.
    pub http_port: u16,
    pub ws_port: u16,
    pub ecs_port: u16,
    pub dynamodb_endpoint: String,
    /// Tables are `<prefix><LogicalId>`; tests use a prefix each.
    pub table_prefix: String,
    pub template: PathBuf,
    /// Configuration variables (`SWITCHBOARD_*`) for the functions.
    pub vars: HashMap<String, String>,
    pub clock: Clock,
    pub task_command: Option<String>,
    /// The command for tasks of the SFU task definition (rooms, warm rooms, the `sfu`
    /// application's sessions); `None`: `task_command`.
    pub sfu_command: Option<String>,
    /// Running tasks the ECS endpoint accepts before it reports RESOURCE failures.
    pub ecs_capacity: Option<usize>,
    pub deliver_disconnect: bool,
    /// Directory served under `/demo/`.
    pub pages: Option<PathBuf>,
    /// The cluster and task definition the ECS endpoint knows (RunTask elsewhere fails as
    /// ECS fails it).
    pub ecs_cluster: String,
    pub ecs_task_definition: String,
    /// Sees each RunTask before it is answered; the reply waits for the acknowledgement.
    pub launch_gate: Option<LaunchGate>,
    /// How often the sweeper runs (`--sweep-interval-seconds`); `None`: only when a test calls
    /// `Stack::sweep`.
    pub sweep_interval: Option<std::time::Duration>,
    /// How long StopTask (and stopping the stack) waits after SIGTERM before SIGKILL.
    pub task_stop_timeout: std::time::Duration,
    /// Each WebSocket frame's dispatch first sleeps a random 0..=N ms (0: none). Frames are
    /// dispatched concurrently either way; the jitter makes races between them likely.
    pub ws_frame_jitter_ms: u64,
    /// API Gateway closes a socket idle this long (no inbound frame) with 1001.
    pub ws_idle_timeout: Duration,
    /// API Gateway closes every socket this long after it connected with 1001.
    pub ws_max_connection: Duration,
    /// Each function's AWS calls are checked against its policies in the template.
    pub enforce_iam: bool,
    /// Sees every event the WebSocket gateway sends a function, as JSON.
    pub ws_event_tap: Option<EventTap>,
}

pub type EventTap = tokio::sync::mpsc::UnboundedSender<serde_json::Value>;

/// A RunTask observed before it is answered: its container environment, and the sender to
/// release the reply.
pub type LaunchGate =
    tokio::sync::mpsc::UnboundedSender<(TaskRecord, tokio::sync::oneshot::Sender<()>)>;

impl StackOptions {
    pub fn new(dynamodb_endpoint: impl Into<String>) -> Self {
        Self {
            http_port: 0,
            ws_port: 0,
            ecs_port: 0,
            dynamodb_endpoint: dynamodb_endpoint.into(),
            table_prefix: String::new(),
            template: workspace_root().join("template.yaml"),
            vars: HashMap::new(),
            clock: Clock::system(),
            task_command: None,
            sfu_command: None,
            ecs_capacity: None,
            deliver_disconnect: true,
            pages: Some(workspace_root().join("demo")),
            ecs_cluster: DEFAULT_CLUSTER.into(),
            ecs_task_definition: DEFAULT_TASK_DEFINITION.into(),
            launch_gate: None,
            sweep_interval: None,
            task_stop_timeout: std::time::Duration::from_secs(10),
            ws_frame_jitter_ms: 0,
            ws_idle_timeout: Duration::from_secs(DEFAULT_WS_IDLE_TIMEOUT_SECONDS),
            ws_max_connection: Duration::from_secs(DEFAULT_WS_MAX_CONNECTION_SECONDS),
            enforce_iam: true,
            ws_event_tap: None,
        }
    }
}

/// API Gateway's WebSocket idle timeout and maximum connection duration.
pub const DEFAULT_WS_IDLE_TIMEOUT_SECONDS: u64 = 600;
pub const DEFAULT_WS_MAX_CONNECTION_SECONDS: u64 = 7200;

/// Each function's `Deps`, by the binary that runs it: its own credentials (access key id =
/// its logical id in template.yaml), as each Lambda has its own role.
pub struct Functions {
    by_binary: HashMap<String, Deps>,
    logical_ids: HashMap<String, String>,
    /// Every handler's metric lines go here.
    metrics: Arc<metrics::Collector>,
}

impl Functions {
    pub fn deps(&self, binary: &str) -> Option<&Deps> {
        self.by_binary.get(binary)
    }

    /// The Deps of the function with this logical id (e.g. `IdentifyFunction`).
    pub fn by_logical_id(&self, logical_id: &str) -> Option<&Deps> {
        self.deps(self.logical_ids.get(logical_id)?)
    }

    /// Runs one invocation of a handler with its metric lines collected.
    pub async fn invocation<F: std::future::Future>(&self, invocation: F) -> F::Output {
        switchboard::metrics::captured(self.metrics.sink(), invocation).await
    }
}

pub struct Stack {
    pub http_url: String,
    pub ws_url: String,
    pub ecs_url: String,
    /// The DynamoDB endpoint the functions use: a proxy that checks IAM.
    pub dynamodb_url: String,
    /// Unchecked admin access (tests inspect tables with it); no function uses it.
    pub deps: Deps,
    functions: Arc<Functions>,
    iam: Arc<Iam>,
    ecs: Arc<ecs::EcsState>,
    ws: Arc<ws_api::WsState>,
    servers: Vec<JoinHandle<()>>,
}

async fn listen(port: u16) -> Result<(TcpListener, u16), StackError> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| StackError::Listen(port, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StackError::Listen(port, e))?
        .port();
    Ok((listener, bound))
}

fn serve(listener: TcpListener, app: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!(error = %e, "server stopped");
        }
    })
}

/// The stack's admin credentials and region, for talking to local endpoints only: never
/// checked against IAM.
pub async fn local_sdk_config() -> aws_config::SdkConfig {
    sdk_config_for(ADMIN_ACCESS_KEY).await
}

/// Credentials whose access key id is `principal` (a function's logical id): the local
/// endpoints judge its calls by that function's policies.
pub async fn sdk_config_for(principal: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(iam::REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            principal,
            "local",
            None,
            None,
            "switchboard-local",
        ))
        .load()
        .await
}

/// The binaries the local stack runs, each with what its function needs from its environment.
pub fn needs_of(binary: &str) -> Option<&'static [Need]> {
    Some(match binary {
        "get-room-id" => get_room_id::NEEDS,
        "claim-room" => claim_room::NEEDS,
        "create-room" => create_room::NEEDS,
        "heartbeat" => heartbeat::NEEDS,
        "status" => status::NEEDS,
        "find-match" => find_match::NEEDS,
        "connect" => connect::NEEDS,
        "identify" => identify::NEEDS,
        "handshake" => handshake::NEEDS,
        "disconnect" => disconnect::NEEDS,
        "default" => default::NEEDS,
        "delete-room" => delete_room::NEEDS,
        "sweeper" => sweeper::NEEDS,
        "available-location" => available_location::NEEDS,
        "create-session" => create_session::NEEDS,
        "list-sessions" => list_sessions::NEEDS,
        "get-session" => get_session::NEEDS,
        "delete-session" => delete_session::NEEDS,
        "join-players" => join_players::NEEDS,
        "leave-players" => leave_players::NEEDS,
        _ => return None,
    })
}

/// Template parameters the local stack sets itself when it is not given them (the VPC it
/// does not have; its default sessions location and application).
fn local_parameter(name: &str, options: &StackOptions) -> Option<String> {
    Some(match name {
        "Subnets" => "subnet-local".into(),
        "SecurityGroups" => "sg-local".into(),
        // Sessions: by default one location, `local` (this machine), and the application `sfu`.
        "Locations" => serde_json::json!({ "local": {
            "region": iam::REGION,
            "cluster": options.ecs_cluster,
            "subnets": ["subnet-local"],
            "securityGroups": ["sg-local"],
            "ips": ["127.0.0.1"],
        }})
        .to_string(),
        "Applications" => serde_json::json!({ "sfu": {
            "taskDefinition": options.ecs_task_definition,
            "container": "sfu",
            "ports": [{ "type": "udp", "container": 7777 }],
        }})
        .to_string(),
        _ => return None,
    })
}

/// The stack's settings that are template parameters but no function's variable.
const STACK_PARAMETERS: [(&str, &str); 1] =
    [(switchboard::config::ALLOWED_ORIGINS, "AllowedOrigins")];

/// What the local stack configures from the template: each function's own configuration,
/// the admin configuration (every need), and the HTTP API's CORS origins.
pub struct Configured {
    pub functions: BTreeMap<String, Config>,
    /// Each function's environment, as the template gives it (parameters resolved).
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
    pub admin: Config,
    pub allowed_origins: Vec<String>,
}

/// The values of template references here: parameters from the stack's `SWITCHBOARD_*`
/// settings (`options.vars`: the variable a parameter sets), else the local stack's own
/// choice, else the parameter's default; resources as the local stack names them.
pub fn local_values(
    options: &StackOptions,
    template: &Template,
    ws_url: &str,
    management_url: &str,
) -> Result<template::Values, StackError> {
    let mut values = template::Values {
        conditions: template.conditions(),
        ..template::Values::default()
    };
    let mut from_variables: HashMap<String, String> = HashMap::new();
    for (variable, parameter) in template
        .variable_parameters()?
        .into_iter()
        .chain(STACK_PARAMETERS.map(|(v, p)| (v.to_string(), p.to_string())))
    {
        if let Some(value) = options.vars.get(&variable) {
            from_variables.insert(parameter, value.clone());
        }
    }
    for parameter in template.parameters() {
        let value = from_variables
            .get(&parameter)
            .cloned()
            .or_else(|| local_parameter(&parameter, options))
            .or_else(|| template.parameter_default(&parameter))
            .unwrap_or_default();
        values.parameters.insert(parameter, value);
    }
    for id in template.table_ids() {
        values
            .resources
            .insert(id.clone(), format!("{}{id}", options.table_prefix));
    }
    values
        .resources
        .insert("SfuCluster".into(), options.ecs_cluster.clone());
    values.resources.insert(
        "SfuTaskDefinition".into(),
        options.ecs_task_definition.clone(),
    );
    for (name, value) in [
        ("AWS::Region", iam::REGION),
        ("AWS::AccountId", "000000000000"),
        ("AWS::Partition", "aws"),
        ("AWS::StackName", "switchboard-local"),
    ] {
        values.pseudo.insert(name.into(), value.into());
    }
    values
        .variables
        .insert("SWITCHBOARD_WS_URL".into(), ws_url.to_string());
    values.variables.insert(
        "SWITCHBOARD_WS_MANAGEMENT_ENDPOINT".into(),
        management_url.to_string(),
    );
    Ok(values)
}

/// Configures every function from exactly the environment template.yaml gives it, with
/// parameters resolved from the stack's settings, as Lambda would start it: a variable the
/// template does not give a function is absent for it, and a setting one of them cannot do
/// without stops the start, naming the function and the setting. Variables the template
/// builds from the stack's own resources (`SWITCHBOARD_WS_URL`, `SWITCHBOARD_ECS_CLUSTER`, ...)
/// take the local stack's values unless `options.vars` sets them; table names cannot be set.
pub fn configure(
    options: &StackOptions,
    template: &Template,
    ws_url: &str,
    management_url: &str,
) -> Result<Configured, StackError> {
    if let Some((_, variable)) = Tables::VARIABLES
        .iter()
        .find(|(_, variable)| options.vars.contains_key(*variable))
    {
        return Err(StackError::TableName(variable.to_string()));
    }
    let values = local_values(options, template, ws_url, management_url)?;
    let from_parameters = template.variable_parameters()?;
    let mut functions = BTreeMap::new();
    let mut environments = BTreeMap::new();
    let mut union: HashMap<String, String> = HashMap::new();
    for (_, binary) in template.functions()? {
        let needs = needs_of(&binary)
            .ok_or_else(|| StackError::UnknownFunction("a function".into(), binary.clone()))?;
        let mut environment = template.function_environment(&binary, &values)?;
        for (name, value) in environment.iter_mut() {
            if !from_parameters.contains_key(name)
                && let Some(given) = options.vars.get(name)
            {
                *value = given.clone();
            }
        }
        let vars: HashMap<String, String> = environment.clone().into_iter().collect();
        let config = Config::from_vars(&vars, needs).map_err(|error| StackError::Function {
            function: binary.clone(),
            error,
        })?;
        union.extend(vars);
        functions.insert(binary.clone(), config);
        environments.insert(binary, environment);
    }
    let admin = Config::from_vars(&union, &Need::ALL)?;
    let allowed_origins = switchboard::config::parse_allowed_origins(
        values.parameters.get("AllowedOrigins").map(String::as_str),
    )?;
    Ok(Configured {
        functions,
        environments,
        admin,
        allowed_origins,
    })
}

/// Checks the stack's configuration as `Stack::start` would, without starting anything.
pub fn check_configuration(options: &StackOptions) -> Result<Configured, StackError> {
    let template = Template::load(&options.template)?;
    let ws_url = format!("ws://127.0.0.1:{}", options.ws_port);
    let management_url = format!("http://127.0.0.1:{}", options.ws_port);
    configure(options, &template, &ws_url, &management_url)
}

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        let template = Template::load(&options.template)?;
        let http_routes = template.http_routes()?;
        let ws_routes = template.ws_routes()?;
        let route_selection = template.ws_route_selection()?;
        for route in &http_routes {
            if !http_api::known_function(&route.function) {
                return Err(StackError::UnknownFunction(
                    format!("{} {}", route.method, route.path),
                    route.function.clone(),
                ));
            }
        }
        for route in &ws_routes {
            if !ws_api::known_function(&route.function) {
                return Err(StackError::UnknownFunction(
                    route.route_key.clone(),
                    route.function.clone(),
                ));
            }
        }

        let (http_listener, http_port) = listen(options.http_port).await?;
        let (ws_listener, ws_port) = listen(options.ws_port).await?;
        let (ecs_listener, ecs_port) = listen(options.ecs_port).await?;
        let (dynamodb_listener, dynamodb_port) = listen(0).await?;
        let dynamodb_url = format!("http://127.0.0.1:{dynamodb_port}");
        let http_url = format!("http://127.0.0.1:{http_port}");
        let ws_url = format!("ws://127.0.0.1:{ws_port}");
        let ecs_url = format!("http://127.0.0.1:{ecs_port}");

        let management_url = format!("http://127.0.0.1:{ws_port}");
        let configured = configure(&options, &template, &ws_url, &management_url)?;

        let iam = Arc::new(Iam::from_template(
            &template,
            iam::LocalNames {
                table_prefix: options.table_prefix.clone(),
                cluster: options.ecs_cluster.clone(),
                task_definition: options.ecs_task_definition.clone(),
                ws_api_id: ws_api::API_ID.into(),
                ws_stage: STAGE.into(),
            },
            options.enforce_iam,
        )?);

        let management = Some(format!("http://127.0.0.1:{ws_port}"));
        let admin = Endpoints {
            dynamodb: Some(options.dynamodb_endpoint.clone()),
            ecs: Some(ecs_url.clone()),
            ec2: Some(ecs_url.clone()),
            management: management.clone(),
        };
        let checked = Endpoints {
            dynamodb: Some(dynamodb_url.clone()),
            ecs: Some(ecs_url.clone()),
            ec2: Some(ecs_url.clone()),
            management,
        };
        let allowed_origins = configured.allowed_origins;
        let mut by_binary = HashMap::new();
        let mut logical_ids = HashMap::new();
        for (logical_id, binary) in template.functions()? {
            let sdk = sdk_config_for(&logical_id).await;
            let config =
                configured.functions.get(&binary).cloned().ok_or_else(|| {
                    StackError::UnknownFunction(logical_id.clone(), binary.clone())
                })?;
            let deps = Deps::new(config, options.clock.clone(), &sdk, checked.clone());
            by_binary.insert(binary.clone(), deps);
            logical_ids.insert(logical_id, binary);
        }
        let functions = Arc::new(Functions {
            by_binary,
            logical_ids,
            metrics: Arc::default(),
        });
        let deps = Deps::new(
            configured.admin,
            options.clock.clone(),
            &local_sdk_config().await,
            admin,
        );
        template
            .create_tables(deps.store.client(), &options.table_prefix)
            .await?;

        let ecs = ecs::EcsState::new(
            &options.ecs_cluster,
            &options.ecs_task_definition,
            options.task_command.clone(),
            options.sfu_command.clone(),
            options.ecs_capacity,
            options.launch_gate.clone(),
            options.task_stop_timeout,
        )
        .with_task_definitions(
            deps.config
                .applications
                .values()
                .flat_map(|a| std::iter::once(&a.task_definition).chain(a.versions.values()))
                .cloned()
                .collect(),
        );
        let ws = Arc::new(ws_api::WsState::new(
            functions.clone(),
            &ws_routes,
            route_selection,
            format!("127.0.0.1:{ws_port}"),
            ws_api::WsSettings {
                frame_jitter_ms: options.ws_frame_jitter_ms,
                idle_timeout: options.ws_idle_timeout,
                max_connection: options.ws_max_connection,
                deliver_disconnect: options.deliver_disconnect,
                event_tap: options.ws_event_tap.clone(),
            },
        ));
        let http = Arc::new(http_api::HttpState {
            functions: functions.clone(),
            routes: http_routes,
            allowed_origins,
            // The demo pages, and beside them the built SDK (`sdk/dist`) they import.
            pages: options
                .pages
                .iter()
                .flat_map(|root| {
                    [
                        pages::Pages::new(root.clone(), "/demo"),
                        pages::Pages::new(workspace_root().join("sdk/dist"), "/sdk"),
                    ]
                })
                .collect(),
        });

        let http_app = Router::new().fallback(http_api::serve).with_state(http);
        let connections = get(ws_api::get_connection)
            .post(ws_api::post_to_connection)
            .delete(ws_api::delete_connection)
            .layer(axum::middleware::from_fn_with_state(
                iam.clone(),
                iam::connections_guard,
            ));
        let ws_app = Router::new()
            .route("/", get(ws_api::upgrade))
            .route("/{stage}", get(ws_api::upgrade))
            .route("/@connections/{id}", connections.clone())
            .route("/{stage}/@connections/{id}", connections)
            .with_state(ws.clone());
        // Every ECS request is judged by who signed it before the endpoint sees it.
        let ecs_app = Router::new()
            .route("/", post(ecs::endpoint))
            .fallback(any(ecs::endpoint))
            .with_state(ecs.clone())
            .layer(axum::middleware::from_fn_with_state(
                iam.clone(),
                iam::ecs_guard,
            ));
        let dynamodb_app = Router::new()
            .fallback(iam::dynamodb_proxy)
            .with_state(Arc::new(iam::DynamoProxy {
                iam: iam.clone(),
                upstream: options.dynamodb_endpoint.trim_end_matches('/').to_string(),
                client: reqwest::Client::new(),
            }));

        let mut servers = vec![
            serve(http_listener, http_app),
            serve(ws_listener, ws_app),
            serve(ecs_listener, ecs_app),
            serve(dynamodb_listener, dynamodb_app),
        ];
        if let Some(interval) = options.sweep_interval {
            // As EventBridge invokes the sweeper: on a schedule, whatever the last run did.
            let deps = functions
                .by_binary
                .get("sweeper")
                .cloned()
                .unwrap_or_else(|| deps.clone());
            let functions = functions.clone();
            servers.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    functions
                        .invocation(sweeper::handler(&deps, serde_json::json!({})))
                        .await;
                }
            }));
        }
        Ok(Self {
            http_url,
            ws_url,
            ecs_url,
            dynamodb_url,
            deps,
            functions,
            iam,
            ecs,
            ws,
            servers,
        })
    }

    /// Runs the sweeper once, as its schedule would (with the sweeper's own credentials).
    pub async fn sweep(&self) -> switchboard::lifecycle::SweepReport {
        self.functions
            .invocation(sweeper::handler(self.sweeper_deps(), serde_json::json!({})))
            .await
    }

    /// The totals of the functions' metrics, as `GET /__local/metrics` serves them.
    pub fn metrics(&self) -> serde_json::Value {
        self.functions.metrics.totals()
    }

    /// The EMF lines the functions wrote (the last 10,000), as CloudWatch Logs would get them.
    pub fn metric_lines(&self) -> Vec<String> {
        self.functions.metrics.lines()
    }

    fn sweeper_deps(&self) -> &Deps {
        self.functions
            .by_binary
            .get("sweeper")
            .unwrap_or(&self.deps)
    }

    /// A function's own Deps (its credentials, checked against its policies), by logical id.
    pub fn function_deps(&self, logical_id: &str) -> Option<Deps> {
        self.functions.by_logical_id(logical_id).cloned()
    }

    /// The policies the stack enforces.
    pub fn iam(&self) -> &Iam {
        &self.iam
    }

    /// The tasks the ECS endpoint has started, with their container environment.
    pub fn tasks(&self) -> Vec<TaskRecord> {
        self.ecs.tasks()
    }

    pub fn open_sockets(&self) -> usize {
        self.ws.open_sockets()
    }

    /// Stops the servers and every task the stack started: SIGTERM to each task's process
    /// group, SIGKILL after the stop timeout; returns once their processes are gone.
    pub fn stop(&mut self) {
        self.ecs.stop_all();
        for server in self.servers.drain(..) {
            server.abort();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
    }
}
