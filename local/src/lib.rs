//! The local stack: everything Switchboard needs on 127.0.0.1, with no AWS account and no
//! Docker. The function handlers run their production code; only their endpoints differ.

pub mod dynamodb;
mod ecs;
mod http_api;
mod pages;
pub mod template;
mod ws_api;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use axum::Router;
use axum::routing::{any, get, post};
use switchboard::config::{ConfigError, Tables};
use switchboard::{Clock, Config, Deps, Endpoints};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use ecs::TaskRecord;
pub use http_api::{CORS_HEADERS, CORS_METHODS};
pub use template::{HttpRoute, Template, WsRoute};
pub use ws_api::STAGE;

pub const DEFAULT_CLUSTER: &str = "switchboard-local";
pub const DEFAULT_TASK_DEFINITION: &str = "switchboard-sfu";

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error(transparent)]
    Config(#[from] ConfigError),
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
}

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
            ecs_capacity: None,
            deliver_disconnect: true,
            pages: Some(workspace_root().join("demo")),
            ecs_cluster: DEFAULT_CLUSTER.into(),
            ecs_task_definition: DEFAULT_TASK_DEFINITION.into(),
            launch_gate: None,
            sweep_interval: None,
            task_stop_timeout: std::time::Duration::from_secs(10),
        }
    }
}

pub struct Stack {
    pub http_url: String,
    pub ws_url: String,
    pub ecs_url: String,
    pub deps: Deps,
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

/// Credentials and region for talking to local endpoints only.
pub async fn local_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "switchboard-local",
        ))
        .load()
        .await
}

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        let template = Template::load(&options.template)?;
        let http_routes = template.http_routes()?;
        let ws_routes = template.ws_routes()?;
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
        let http_url = format!("http://127.0.0.1:{http_port}");
        let ws_url = format!("ws://127.0.0.1:{ws_port}");
        let ecs_url = format!("http://127.0.0.1:{ecs_port}");

        let mut vars = options.vars.clone();
        let tables = Tables::with_prefix(&options.table_prefix);
        for (logical, variable) in Tables::VARIABLES {
            vars.insert(
                variable.to_string(),
                format!("{}{logical}", options.table_prefix),
            );
        }
        debug_assert_eq!(vars.get("SWITCHBOARD_ROOMS_TABLE"), Some(&tables.rooms));
        vars.entry("SWITCHBOARD_WS_URL".into())
            .or_insert_with(|| ws_url.clone());
        for (name, value) in [
            ("SWITCHBOARD_ECS_CLUSTER", options.ecs_cluster.as_str()),
            (
                "SWITCHBOARD_ECS_TASK_DEFINITION",
                options.ecs_task_definition.as_str(),
            ),
            ("SWITCHBOARD_ECS_CONTAINER", "sfu"),
            ("SWITCHBOARD_ECS_SUBNETS", "subnet-local"),
            ("SWITCHBOARD_ECS_SECURITY_GROUPS", "sg-local"),
        ] {
            vars.entry(name.into()).or_insert_with(|| value.into());
        }
        // Sessions: by default one location, `local` (this machine), and the application `sfu`.
        vars.entry("SWITCHBOARD_LOCATIONS".into())
            .or_insert_with(|| {
                serde_json::json!({ "local": {
                    "region": "us-east-1",
                    "cluster": options.ecs_cluster,
                    "subnets": ["subnet-local"],
                    "securityGroups": ["sg-local"],
                    "ips": ["127.0.0.1"],
                }})
                .to_string()
            });
        vars.entry("SWITCHBOARD_APPLICATIONS".into())
            .or_insert_with(|| {
                serde_json::json!({ "sfu": {
                    "taskDefinition": options.ecs_task_definition,
                    "container": "sfu",
                    "ports": [{ "type": "udp", "container": 7777 }],
                }})
                .to_string()
            });
        let config = Config::from_vars(&vars)?;

        let sdk = local_sdk_config().await;
        let endpoints = Endpoints {
            dynamodb: Some(options.dynamodb_endpoint.clone()),
            ecs: Some(ecs_url.clone()),
            management: Some(format!("http://127.0.0.1:{ws_port}")),
        };
        let allowed_origins = config.allowed_origins.clone();
        let deps = Deps::new(config, options.clock.clone(), &sdk, endpoints);
        template
            .create_tables(deps.store.client(), &options.table_prefix)
            .await?;

        let ecs = ecs::EcsState::new(
            &options.ecs_cluster,
            &options.ecs_task_definition,
            options.task_command.clone(),
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
            deps.clone(),
            &ws_routes,
            format!("127.0.0.1:{ws_port}"),
            options.deliver_disconnect,
        ));
        let http = Arc::new(http_api::HttpState {
            deps: deps.clone(),
            routes: http_routes,
            allowed_origins,
            pages: options
                .pages
                .clone()
                .map(|root| pages::Pages::new(root, "/demo")),
        });

        let http_app = Router::new().fallback(http_api::serve).with_state(http);
        let connections = get(ws_api::get_connection)
            .post(ws_api::post_to_connection)
            .delete(ws_api::delete_connection);
        let ws_app = Router::new()
            .route("/", get(ws_api::upgrade))
            .route("/{stage}", get(ws_api::upgrade))
            .route("/@connections/{id}", connections.clone())
            .route("/{stage}/@connections/{id}", connections)
            .with_state(ws.clone());
        let ecs_app = Router::new()
            .route("/", post(ecs::endpoint))
            .fallback(any(ecs::endpoint))
            .with_state(ecs.clone());

        let mut servers = vec![
            serve(http_listener, http_app),
            serve(ws_listener, ws_app),
            serve(ecs_listener, ecs_app),
        ];
        if let Some(interval) = options.sweep_interval {
            // As EventBridge invokes the sweeper: on a schedule, whatever the last run did.
            let deps = deps.clone();
            servers.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    sweeper::handler(&deps, serde_json::json!({})).await;
                }
            }));
        }
        Ok(Self {
            http_url,
            ws_url,
            ecs_url,
            deps,
            ecs,
            ws,
            servers,
        })
    }

    /// Runs the sweeper once, as its schedule would.
    pub async fn sweep(&self) -> switchboard::lifecycle::SweepReport {
        sweeper::handler(&self.deps, serde_json::json!({})).await
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
