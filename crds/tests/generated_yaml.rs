//! The checked-in CRD YAML matches the Rust types, and the schemas are structural
//! (the API server rejects non-structural schemas, and kube's generator can emit
//! them silently for some Rust shapes).

use std::path::Path;

use golftracker_crds::crd_manifests;
use serde_json::Value;

#[test]
fn checked_in_yaml_matches_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("yaml");
    for manifest in crd_manifests() {
        let path = dir.join(&manifest.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == manifest.yaml,
            "{} differs from the types: run `cargo xtask crds`",
            path.display()
        );
    }
}

/// Walks a schema node and collects the paths that break the structural rules we can check
/// offline: no `$ref`, a `type` on every node (or an int-or-string / preserve-unknown marker),
/// and no type-defining keywords inside `anyOf`/`oneOf`/`allOf`/`not`.
fn structural_violations(
    node: &Value,
    path: &str,
    in_value_validation: bool,
    out: &mut Vec<String>,
) {
    let Some(obj) = node.as_object() else { return };
    if obj.contains_key("$ref") {
        out.push(format!("{path}: $ref"));
    }
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_value_validation {
        for key in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
        ] {
            if obj.contains_key(key) {
                out.push(format!("{path}: `{key}` inside a logical junctor"));
            }
        }
    } else if !typed {
        out.push(format!("{path}: no type"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_violations(child, &format!("{path}.{name}"), in_value_validation, out);
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{path}[]"), in_value_validation, out);
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        structural_violations(additional, &format!("{path}{{}}"), in_value_validation, out);
    }
    for junctor in ["anyOf", "oneOf", "allOf"] {
        for (i, branch) in obj
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_violations(branch, &format!("{path}/{junctor}[{i}]"), true, out);
        }
    }
}

#[test]
fn schemas_are_structural() {
    for manifest in crd_manifests() {
        let crd = serde_json::to_value(&manifest.crd).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert!(schema.is_object(), "{} has no schema", manifest.file_name);
        let mut violations = Vec::new();
        structural_violations(schema, "", false, &mut violations);
        assert!(
            violations.is_empty(),
            "{} is not structural:\n{}",
            manifest.file_name,
            violations.join("\n")
        );
    }
}

fn cel_messages(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(obj) => {
            for rule in obj
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(
                    rule["message"]
                        .as_str()
                        .unwrap_or(rule["rule"].as_str().unwrap_or(""))
                        .to_string(),
                );
            }
            obj.values().for_each(|v| cel_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_messages(v, out)),
        _ => {}
    }
}

#[test]
fn crds_carry_the_cel_rules() {
    let mut messages = Vec::new();
    for manifest in crd_manifests() {
        cel_messages(&serde_json::to_value(&manifest.crd).unwrap(), &mut messages);
    }
    for expected in [
        "spec.video is immutable",
        "spec.stackRef is immutable",
        "storage.bucket is immutable",
        "lifecycle.daysToExpire must be greater than daysToIntelligentTiering",
        "encryption.kmsKeyId is required with mode SSE-KMS",
        "database.credentials needs exactly one of secretRef or vault",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "missing CEL rule {expected:?} in {messages:?}"
        );
    }
}

#[test]
fn crd_names_kinds_and_printer_columns() {
    let manifests = crd_manifests();
    let names: Vec<_> = manifests.iter().map(|m| m.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "golftrackerstacks.golftracker.io.yaml",
            "swinganalyses.golftracker.io.yaml"
        ]
    );
    let stack = &manifests[0].crd.spec;
    assert_eq!(
        stack.names.short_names.as_deref(),
        Some(&["gts".to_string()][..])
    );
    assert_eq!(
        stack.names.categories.as_deref(),
        Some(&["golftracker".to_string()][..])
    );
    let columns: Vec<_> = stack.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Bucket", "Running", "Queued", "Age"]);
    let analysis = &manifests[1].crd.spec;
    assert_eq!(analysis.names.plural, "swinganalyses");
    assert!(
        analysis.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
}
