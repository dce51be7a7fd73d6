//! Where the server binaries (and helm, for the chart tests) are: the Go-built ones in
//! the cache that `build-servers.sh` fills (building what is missing), PostgreSQL from apt.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    process::Command,
};

use nix::fcntl::{Flock, FlockArg};

use crate::Error;

/// The script that pins, builds and caches the Go servers.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("build-servers.sh")
}

/// Paths of the Go-built servers by name (`etcd`, `kube-apiserver`, `kubectl`,
/// `minio`, `vault`, `helm`), building the missing ones among `needed` first. Prints
/// progress: a cold build takes minutes per server on 2 cores.
pub fn ensure_go_servers(needed: &[&str]) -> Result<BTreeMap<String, PathBuf>, Error> {
    let paths = cached_server_paths()?;
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|name| paths.get(*name).is_none_or(|path| !path.is_file()))
        .collect();
    if missing.is_empty() {
        return Ok(paths);
    }
    // Parallel tests (and a concurrent `cargo xtask env up`) must not build the
    // same binary twice into the same file.
    let lock_path = paths
        .values()
        .next()
        .and_then(|path| path.parent())
        .map(|bin| bin.join(".build.lock"))
        .ok_or_else(|| Error::BuildServers("build-servers.sh --print listed nothing".into()))?;
    let _lock = lock_file(&lock_path)?;
    eprintln!(
        "[local-cluster] building {} (first time only: minutes each on 2 cores)",
        missing.join(", ")
    );
    let status = Command::new("bash")
        .arg(build_script())
        .args(&missing)
        .status()
        .map_err(|source| Error::Io {
            action: "run build-servers.sh".into(),
            source,
        })?;
    if !status.success() {
        return Err(Error::BuildServers(format!(
            "build-servers.sh {} exited with {status}",
            missing.join(" ")
        )));
    }
    Ok(paths)
}

fn cached_server_paths() -> Result<BTreeMap<String, PathBuf>, Error> {
    let output = Command::new("bash")
        .arg(build_script())
        .arg("--print")
        .output()
        .map_err(|source| Error::Io {
            action: "run build-servers.sh --print".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::BuildServers(format!(
            "build-servers.sh --print exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(parse_server_list(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `build-servers.sh --print` output: one `name path` per line.
fn parse_server_list(listing: &str) -> BTreeMap<String, PathBuf> {
    listing
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, path)| (name.trim().to_owned(), PathBuf::from(path.trim())))
        .collect()
}

fn lock_file(path: &Path) -> Result<Flock<File>, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: format!("create {}", dir.display()),
            source,
        })?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| Error::Io {
            action: format!("open {}", path.display()),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
        action: format!("lock {}", path.display()),
        source: errno.into(),
    })
}

/// The directory with `initdb` and `postgres`: `$GOLFTRACKER_PG_BINDIR`, else the
/// newest `/usr/lib/postgresql/<major>/bin` (Debian's layout).
pub fn postgres_bindir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("GOLFTRACKER_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let majors = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    newest_postgres_bindir(Path::new("/usr/lib/postgresql"), majors)
        .filter(|dir| dir.join("initdb").is_file())
        .ok_or(Error::PostgresMissing)
}

fn newest_postgres_bindir(root: &Path, majors: impl Iterator<Item = u32>) -> Option<PathBuf> {
    majors
        .max()
        .map(|major| root.join(major.to_string()).join("bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_server_listing() {
        let listing = "etcd /c/bin/etcd-v3.6.8\nkube-apiserver /c/bin/kube-apiserver-v1.36.3\n\n";
        let paths = parse_server_list(listing);
        assert_eq!(paths.len(), 2);
        assert_eq!(paths["etcd"], PathBuf::from("/c/bin/etcd-v3.6.8"));
    }

    #[test]
    fn picks_the_newest_postgres_major() {
        let dir =
            newest_postgres_bindir(Path::new("/usr/lib/postgresql"), [13, 17, 15].into_iter());
        assert_eq!(dir, Some(PathBuf::from("/usr/lib/postgresql/17/bin")));
        assert_eq!(
            newest_postgres_bindir(Path::new("/x"), std::iter::empty()),
            None
        );
    }
}
