//! A private PostgreSQL cluster: initdb into the work dir, its own port and
//! socket directory, password (SCRAM) authentication on TCP.
//!
//! PostgreSQL refuses to run as root, so when we are root (CI containers) both
//! initdb and the server run as the unprivileged `nobody` user, and the data
//! directory belongs to it.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use nix::{
    sys::signal::Signal,
    unistd::{Gid, Uid, User, chown},
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{
    Error,
    binaries::postgres_bindir,
    process::{ServerCommand, ServerProcess, free_port, run_to_completion},
    random_secret,
};

const SUPERUSER: &str = "postgres";
const DATABASE: &str = "postgres";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Whom PostgreSQL runs as when we are root.
const UNPRIVILEGED_USER: &str = "nobody";

/// How to reach PostgreSQL. Not `Debug`: it holds the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct PostgresEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl PostgresEndpoint {
    /// `postgres://user:password@127.0.0.1:port/database` (the password is
    /// alphanumeric, so it needs no escaping).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.database
        )
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database(&self.database)
    }

    /// Succeeds once the server accepts a login.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        sqlx::PgConnection::connect_with(&self.connect_options())
            .await?
            .close()
            .await
    }

    /// A small connection pool to this server.
    pub async fn pool(&self) -> Result<PgPool, Error> {
        PgPoolOptions::new()
            .max_connections(5)
            .connect_with(self.connect_options())
            .await
            .map_err(Error::Postgres)
    }
}

pub(crate) async fn start(
    dir: &Path,
    die_with_parent: bool,
) -> Result<(ServerProcess, PostgresEndpoint), Error> {
    let bindir = postgres_bindir()?;
    let run_as = unprivileged_user()?;
    let pg_dir = dir.join("postgres");
    let data_dir = pg_dir.join("data");
    std::fs::create_dir_all(&pg_dir).map_err(|source| io(&pg_dir, "create", source))?;
    std::fs::set_permissions(&pg_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| io(&pg_dir, "chmod", source))?;
    let endpoint = PostgresEndpoint {
        host: "127.0.0.1".to_owned(),
        port: free_port()?,
        user: SUPERUSER.to_owned(),
        password: random_secret(24),
        database: DATABASE.to_owned(),
    };
    let password_file = pg_dir.join("superuser-password");
    crate::write_private_file(&password_file, &endpoint.password)?;
    if let Some((uid, gid)) = run_as {
        // The unprivileged user must reach its directory through ours.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|source| io(dir, "chmod", source))?;
        for path in [&pg_dir, &password_file] {
            chown(path.as_path(), Some(uid), Some(gid))
                .map_err(|errno| io(path, "chown", errno.into()))?;
        }
    }

    let mut initdb = ServerCommand::new("initdb", &bindir.join("initdb"), dir.join("initdb.log"));
    initdb.run_as = run_as;
    initdb
        .command
        .arg("--pgdata")
        .arg(&data_dir)
        .args(["--username", SUPERUSER, "--encoding=UTF8", "--locale=C"])
        .arg(format!("--pwfile={}", password_file.display()))
        .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
        .args(["--no-sync", "--no-instructions"]);
    let initdb_result = run_to_completion("initdb", initdb);
    let _ = std::fs::remove_file(&password_file);
    initdb_result?;

    let mut postgres = ServerCommand::new(
        "postgres",
        &bindir.join("postgres"),
        dir.join("postgres.log"),
    );
    postgres.run_as = run_as;
    postgres.die_with_parent = die_with_parent;
    // SIGINT is PostgreSQL's "fast" shutdown: no waiting for clients to leave.
    postgres.stop_signal = Signal::SIGINT;
    postgres
        .command
        .arg("-D")
        .arg(&data_dir)
        .arg("-k")
        .arg(&pg_dir)
        .args(["-p", &endpoint.port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        // Throwaway data: durability only costs time here.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    let mut postgres = postgres.spawn()?;
    postgres
        .wait_ready(READY_TIMEOUT, || endpoint.ping())
        .await?;
    Ok((postgres, endpoint))
}

/// `Some(nobody)` when we are root, `None` when we may run PostgreSQL ourselves.
fn unprivileged_user() -> Result<Option<(Uid, Gid)>, Error> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name(UNPRIVILEGED_USER)
        .ok()
        .flatten()
        .ok_or(Error::NoUnprivilegedUser(UNPRIVILEGED_USER))?;
    Ok(Some((user.uid, user.gid)))
}

fn io(path: &Path, action: &str, source: std::io::Error) -> Error {
    Error::Io {
        action: format!("{action} {}", path.display()),
        source,
    }
}
