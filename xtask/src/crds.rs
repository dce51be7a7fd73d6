//! `cargo xtask crds`: writes the generated CRD manifests next to the types.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn yaml_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml")
}

pub fn run(check: bool) -> anyhow::Result<()> {
    let dir = yaml_dir();
    let mut stale = Vec::new();
    for manifest in golftracker_crds::crd_manifests() {
        let path = dir.join(&manifest.file_name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == manifest.yaml {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, &manifest.yaml)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "CRD YAML is out of date, run `cargo xtask crds`: {}",
            stale.join(", ")
        );
    }
    Ok(())
}
