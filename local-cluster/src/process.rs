//! Server processes: each runs in its own process group with its output in a log
//! file, so that stopping it also stops whatever it forked (PostgreSQL's backends)
//! and a failed start can be explained from its log.

use std::{
    fs::File,
    future::Future,
    io::{Read, Seek, SeekFrom},
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::{Pid, Uid},
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How many bytes of a server's log an error message quotes.
const LOG_TAIL_BYTES: u64 = 4000;

/// How long a server may take to shut down before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A started server: its process group and log, and the signal that shuts it down.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerRecord {
    pub name: String,
    /// Process id, which is also the process group id.
    pub pid: i32,
    pub log: PathBuf,
    /// Signal name (e.g. `SIGTERM`) that shuts this server down quickly.
    pub stop_signal: String,
}

impl ServerRecord {
    fn stop_signal(&self) -> Signal {
        self.stop_signal.parse().unwrap_or(Signal::SIGTERM)
    }
}

/// A server this process started and still owns.
pub(crate) struct ServerProcess {
    pub(crate) record: ServerRecord,
    child: Child,
    /// How it was started, so a test can stop it and start it again (an outage).
    recipe: Recipe,
}

/// What [`ServerCommand::spawn`] ran, kept to run it again on the same ports and data.
#[derive(Clone)]
struct Recipe {
    name: &'static str,
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    log: PathBuf,
    stop_signal: Signal,
    run_as: Option<(Uid, nix::unistd::Gid)>,
    die_with_parent: bool,
}

impl Recipe {
    fn of(command: &ServerCommand) -> Self {
        Self {
            name: command.name,
            program: command.command.get_program().to_owned(),
            args: command.command.get_args().map(ToOwned::to_owned).collect(),
            envs: command
                .command
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            log: command.log.clone(),
            stop_signal: command.stop_signal,
            run_as: command.run_as,
            die_with_parent: command.die_with_parent,
        }
    }

    fn command(&self) -> ServerCommand {
        let mut command = ServerCommand::new(self.name, Path::new(&self.program), self.log.clone());
        command.command.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.command.env(key, value),
                None => command.command.env_remove(key),
            };
        }
        command.stop_signal = self.stop_signal;
        command.run_as = self.run_as;
        command.die_with_parent = self.die_with_parent;
        command
    }
}

/// What to run as a server.
pub(crate) struct ServerCommand {
    pub(crate) name: &'static str,
    pub(crate) command: Command,
    pub(crate) log: PathBuf,
    pub(crate) stop_signal: Signal,
    /// Run as this (uid, gid) instead of ours (PostgreSQL refuses to run as root).
    pub(crate) run_as: Option<(Uid, nix::unistd::Gid)>,
    /// Kill the server when the thread that started it exits (tests); off for
    /// servers that must outlive us (`cargo xtask env up`).
    pub(crate) die_with_parent: bool,
}

impl ServerCommand {
    pub(crate) fn new(name: &'static str, program: &Path, log: PathBuf) -> Self {
        Self {
            name,
            command: Command::new(program),
            log,
            stop_signal: Signal::SIGTERM,
            run_as: None,
            die_with_parent: true,
        }
    }

    pub(crate) fn spawn(self) -> Result<ServerProcess, Error> {
        self.spawn_logging(false)
    }

    /// Starts the server; `append` keeps the log of an earlier run of it.
    fn spawn_logging(mut self, append: bool) -> Result<ServerProcess, Error> {
        let recipe = Recipe::of(&self);
        // Owner-only: Vault's dev mode prints its root token into its log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .truncate(!append)
            .append(append)
            .write(true)
            .mode(0o600)
            .open(&self.log)
            .map_err(|source| Error::Io {
                action: format!("create log file {}", self.log.display()),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            action: format!("open log file {}", self.log.display()),
            source,
        })?;
        self.command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            self.command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        if self.die_with_parent {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                self.command.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
        }
        let child = self.command.spawn().map_err(|source| Error::Io {
            action: format!("start {}", self.name),
            source,
        })?;
        Ok(ServerProcess {
            record: ServerRecord {
                name: self.name.to_owned(),
                pid: child.id() as i32,
                log: self.log,
                stop_signal: self.stop_signal.as_str().to_owned(),
            },
            child,
            recipe,
        })
    }
}

impl ServerProcess {
    /// Polls `probe` until it succeeds; fails early, quoting the log, when the
    /// server exits or `timeout` passes.
    pub(crate) async fn wait_ready<F, Fut, E>(
        &mut self,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("exited with {status}")));
            }
            let last_error = match probe().await {
                Ok(()) => return Ok(()),
                Err(error) => error.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(self.not_ready(format!(
                    "not ready after {}s (last probe error: {last_error})",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn not_ready(&self, problem: String) -> Error {
        Error::ServerNotReady {
            server: self.record.name.clone(),
            problem,
            log: self.record.log.clone(),
            log_tail: log_tail(&self.record.log),
        }
    }

    /// Asks the server to shut down without waiting, so that several stop at once.
    pub(crate) fn send_stop_signal(&self) {
        let _ = killpg(Pid::from_raw(self.record.pid), self.record.stop_signal());
    }

    /// Stops the server and waits for it to go: its port refuses connections until
    /// [`Self::restart`].
    pub(crate) fn stop(&mut self) {
        self.send_stop_signal();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left of the group (the leader, or children it left behind).
        let _ = killpg(Pid::from_raw(self.record.pid), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Starts the server again exactly as before (same ports, data and secrets).
    pub(crate) fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        let fresh = self.recipe.command().spawn_logging(true)?;
        // Already stopped: forgetting the old handle skips stopping it twice.
        std::mem::forget(std::mem::replace(self, fresh));
        Ok(())
    }

    /// Leaves the server running after this value is gone (`cargo xtask env up`).
    pub(crate) fn detach(self) -> ServerRecord {
        let record = self.record.clone();
        // Forgetting the handle skips `Drop`, which would stop the server.
        std::mem::forget(self);
        record
    }
}

/// Runs a setup command (initdb) to completion, failing with its output.
pub(crate) fn run_to_completion(name: &'static str, command: ServerCommand) -> Result<(), Error> {
    let log = command.log.clone();
    let mut process = command.spawn()?;
    let status = process.child.wait().map_err(|source| Error::Io {
        action: format!("wait for {name}"),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::ServerNotReady {
            server: name.to_owned(),
            problem: format!("exited with {status}"),
            log_tail: log_tail(&log),
            log,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops servers this process did not start (`cargo xtask env down`), by process
/// group: their stop signal first, SIGKILL for any still there after a grace period.
pub fn stop_servers(servers: &[ServerRecord]) {
    for server in servers {
        let _ = killpg(Pid::from_raw(server.pid), server.stop_signal());
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline && servers.iter().any(|s| group_alive(s.pid)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for server in servers.iter().filter(|s| group_alive(s.pid)) {
        let _ = killpg(Pid::from_raw(server.pid), Signal::SIGKILL);
    }
}

/// Whether any process of the group still exists (signal 0 probes without sending).
pub fn group_alive(pgid: i32) -> bool {
    killpg(Pid::from_raw(pgid), None).is_ok()
}

/// The last few KiB of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("<log not readable>");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).map_err(|source| {
            Error::Io {
                action: "pick a free port".to_owned(),
                source,
            }
        })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| Error::Io {
            action: "pick a free port".to_owned(),
            source,
        })
}

/// A free port whose successor is free too (Vault's dev mode puts its cluster
/// listener on the API port + 1).
pub(crate) fn free_port_pair() -> Result<u16, Error> {
    for _ in 0..50 {
        let port = free_port()?;
        if port < u16::MAX
            && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(Error::Io {
        action: "pick two adjacent free ports".to_owned(),
        source: std::io::Error::other("none found in 50 tries"),
    })
}

/// Succeeds once something accepts TCP connections on the port.
pub(crate) async fn tcp_accepts(port: u16) -> Result<(), std::io::Error> {
    tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map(drop)
}
