//! The container images (images/*.Dockerfile). No Docker engine runs here, so what can
//! be checked without one is: the worker's runtime stage installs exactly the Debian
//! packages of the libraries the worker binary links, apt brings every library those
//! load in turn, no build tools reach the runtime stage, and both run as a non-root uid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use golftracker_e2e::{operator_binary, worker_binary};

/// What every Debian base image has (Priority: required): glibc and libgcc.
const BASE_PACKAGES: [&str; 2] = ["libc6", "libgcc-s1"];
/// The uid the operator runs worker pods as (operator/src/analysis/job.rs), and
/// distroless' `nonroot`.
const NON_ROOT_UID: &str = "65532";

fn dockerfile(name: &str) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../images")
        .join(name);
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// The final stage: everything after the last `FROM`.
fn runtime_stage(dockerfile: &str) -> &str {
    let start = dockerfile
        .match_indices("\nFROM ")
        .last()
        .map_or(0, |(i, _)| i + 1);
    &dockerfile[start..]
}

/// Packages a stage installs with `apt-get install` (line continuations joined).
fn apt_packages(stage: &str) -> BTreeSet<String> {
    let joined = stage.replace("\\\n", " ");
    joined
        .split("&&")
        .filter_map(|command| command.trim().strip_prefix("apt-get install"))
        .flat_map(|args| args.split_whitespace())
        .filter(|arg| !arg.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The sonames the binary itself asks for (ELF NEEDED).
fn needed(binary: &Path) -> anyhow::Result<BTreeSet<String>> {
    Ok(output("readelf", &["-d", binary.to_str().unwrap()])?
        .lines()
        .filter_map(|l| l.split_once("Shared library: [")?.1.strip_suffix(']'))
        .map(str::to_owned)
        .collect())
}

/// Every library the loader maps for the binary, soname → path (`ldd`).
fn loaded(binary: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    Ok(output("ldd", &[binary.to_str().unwrap()])?
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            match line.split_once(" => ") {
                Some((soname, rest)) => Some((soname.to_owned(), rest.split_whitespace().next()?)),
                // The loader itself: `/lib64/ld-linux-x86-64.so.2 (0x…)`.
                None if line.starts_with('/') => {
                    let path = line.split_whitespace().next()?;
                    Some((path.rsplit('/').next()?.to_owned(), path))
                }
                None => None,
            }
        })
        .map(|(soname, path)| (soname, PathBuf::from(path)))
        .collect())
}

/// Every library the loader maps for the binary, soname → the Debian package that ships
/// it: one `dpkg -S` for all, asked for both sides of the /usr merge.
fn loaded_packages(binary: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let unmerged = |path: &str| path.strip_prefix("/usr").unwrap_or(path).to_owned();
    let loaded: Vec<(String, String)> = loaded(binary)?
        .into_iter()
        .map(|(soname, path)| (soname, unmerged(&path.to_string_lossy())))
        .collect();
    let candidates = loaded
        .iter()
        .flat_map(|(_, path)| [path.clone(), format!("/usr{path}")]);
    // Exits 1 as one side of the merge is always unknown; the known side is printed.
    let out = Command::new("dpkg").arg("-S").args(candidates).output()?;
    let owners: BTreeMap<String, String> = String::from_utf8(out.stdout)?
        .lines()
        .filter(|line| !line.starts_with("diversion "))
        .filter_map(|line| {
            let (packages, path) = line.split_once(": ")?;
            let package = packages.split([':', ',']).next()?.trim();
            Some((unmerged(path), package.to_owned()))
        })
        .collect();
    loaded
        .into_iter()
        .map(|(soname, path)| {
            let package = owners
                .get(&path)
                .with_context(|| format!("no Debian package ships {path} ({soname})"))?;
            Ok((soname, package.clone()))
        })
        .collect()
}

/// Depends and Pre-Depends of every installed package, from one dpkg-query.
fn installed_dependencies() -> anyhow::Result<BTreeMap<String, String>> {
    Ok(output(
        "dpkg-query",
        &[
            "-W",
            "-f=${Package}\t${Status}\t${Depends}, ${Pre-Depends}\n",
        ],
    )?
    .lines()
    .filter_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let (package, status, depends) = (fields.next()?, fields.next()?, fields.next()?);
        status
            .ends_with("installed")
            .then(|| (package.to_owned(), depends.to_owned()))
    })
    .collect())
}

/// The packages apt installs for `roots`: their Depends and Pre-Depends, recursively
/// (of alternatives, the installed one, as apt would have picked here).
fn dependency_closure(roots: impl IntoIterator<Item = String>) -> anyhow::Result<BTreeSet<String>> {
    let installed = installed_dependencies()?;
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(package) = todo.pop() {
        if !seen.insert(package.clone()) {
            continue;
        }
        let depends = installed
            .get(&package)
            .with_context(|| format!("{package} is not installed here"))?;
        for alternatives in depends.split(',').filter(|d| !d.trim().is_empty()) {
            let picked = alternatives
                .split('|')
                .filter_map(|a| a.split_whitespace().next())
                .map(|name| name.split(':').next().unwrap_or(name))
                .find(|name| installed.contains_key(*name));
            if let Some(name) = picked {
                todo.push(name.to_owned());
            }
        }
    }
    Ok(seen)
}

/// Packages of the libraries the binary asks for directly, base packages left out.
fn direct_packages(binary: &Path) -> anyhow::Result<BTreeSet<String>> {
    let packages = loaded_packages(binary)?;
    needed(binary)?
        .into_iter()
        .map(|soname| {
            packages
                .get(&soname)
                .cloned()
                .with_context(|| format!("{soname} is needed but not loaded"))
        })
        .filter(|p| {
            p.as_ref()
                .map_or(true, |p| !BASE_PACKAGES.contains(&p.as_str()))
        })
        .collect()
}

#[test]
fn worker_image_installs_exactly_the_libraries_the_worker_links() -> anyhow::Result<()> {
    let binary = worker_binary()?;
    let stage = runtime_stage(&dockerfile("worker.Dockerfile")?).to_owned();
    let mut listed = apt_packages(&stage);
    // Trust roots for TLS to S3 and Vault: data, not a linked library.
    assert!(listed.remove("ca-certificates"), "ca-certificates missing");
    assert_eq!(listed, direct_packages(&binary)?);

    // Everything the loader maps comes with them (or is in the base image).
    let closure = dependency_closure(
        listed
            .iter()
            .cloned()
            .chain(BASE_PACKAGES.map(str::to_owned)),
    )?;
    for (soname, package) in loaded_packages(&binary)? {
        assert!(
            closure.contains(&package),
            "{soname} ({package}) would be missing from the image"
        );
    }
    Ok(())
}

#[test]
fn operator_binary_links_only_what_distroless_cc_has() -> anyhow::Result<()> {
    let stage = runtime_stage(&dockerfile("operator.Dockerfile")?).to_owned();
    assert!(
        stage.starts_with("FROM gcr.io/distroless/cc-debian12:nonroot"),
        "{stage}"
    );
    assert_eq!(direct_packages(&operator_binary()?)?, BTreeSet::new());
    Ok(())
}

#[test]
fn runtime_stages_hold_no_build_tools_and_run_as_non_root() -> anyhow::Result<()> {
    for name in ["worker.Dockerfile", "operator.Dockerfile"] {
        let file = dockerfile(name)?;
        let stage = runtime_stage(&file);
        assert!(
            file.matches("\nFROM ").count() >= 2,
            "{name}: not multi-stage"
        );
        for tool in [
            "-dev",
            "clang",
            "gcc",
            "pkg-config",
            "build-essential",
            "cargo",
        ] {
            assert!(
                !apt_packages(stage).iter().any(|p| p.contains(tool)),
                "{name}: {tool} in the runtime stage"
            );
        }
        let user = stage
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .with_context(|| format!("{name}: no USER"))?;
        assert_eq!(
            user.trim(),
            format!("{NON_ROOT_UID}:{NON_ROOT_UID}"),
            "{name}"
        );
        assert!(
            stage.contains("COPY --from=build"),
            "{name}: the binary must come from the build stage"
        );
    }
    Ok(())
}
