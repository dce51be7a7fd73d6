//! The HCP Terraform example (examples/terraform). `terraform validate` needs the helm
//! and kubernetes providers from the Terraform registry, which this project cannot
//! reach, so the example is checked with HashiCorp's HCL parser instead: hclcheck
//! (local-cluster/go/hclcheck) parses it as Terraform does, checks `terraform fmt`
//! formatting, the top-level blocks, required arguments and every reference.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// hclcheck, built once per run by Go (its build cache makes that a no-op when nothing
/// changed); tests run in parallel, so one builds and the others wait.
fn hclcheck(dirs: &[&Path]) -> anyhow::Result<Output> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let binary = BUILT.get_or_init(|| {
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hclcheck");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(repo().join("local-cluster/go/hclcheck"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(binary)
    });
    let binary = binary
        .as_ref()
        .map_err(|e| anyhow::anyhow!("building hclcheck: {e}"))?;
    Ok(Command::new(binary).args(dirs).output()?)
}

#[test]
fn terraform_example_parses_is_formatted_and_refers_only_to_what_it_declares() -> anyhow::Result<()>
{
    let example = repo().join("examples/terraform");
    let out = hclcheck(&[&example])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn hclcheck_rejects_an_undeclared_variable_and_bad_formatting() -> anyhow::Result<()> {
    let broken = Path::new(env!("CARGO_TARGET_TMPDIR")).join("terraform-broken");
    std::fs::create_dir_all(&broken)?;
    for entry in std::fs::read_dir(repo().join("examples/terraform"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tf") {
            let text = std::fs::read_to_string(&path)?
                .replace("var.rds_endpoint", "var.rds_host")
                .replace("  create_namespace = true", "  create_namespace   = true");
            std::fs::write(broken.join(path.file_name().unwrap()), text)?;
        }
    }
    let out = hclcheck(&[&broken])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("reference to undeclared variable rds_host"),
        "{stderr}"
    );
    assert!(stderr.contains("main.tf:1,1-1: not formatted"), "{stderr}");
    Ok(())
}
