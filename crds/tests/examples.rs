//! Every manifest under examples/ parses into the Rust types (unknown fields rejected),
//! so the examples cannot drift from the API.

use std::path::Path;

use golftracker_crds::{GolfTrackerStack, SwingAnalysis};
use serde::Deserialize;

#[derive(Deserialize)]
struct TypeMeta {
    kind: String,
}

/// Leaves of `original` that are missing from `reparsed`: fields the types silently dropped.
fn dropped_fields(
    original: &serde_json::Value,
    reparsed: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    match (original, reparsed) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => dropped_fields(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                dropped_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &str, file: &Path) {
    let original: serde_json::Value =
        serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut dropped = Vec::new();
    dropped_fields(
        &original,
        &serde_json::to_value(&typed).unwrap(),
        "",
        &mut dropped,
    );
    assert!(
        dropped.is_empty(),
        "{}: fields unknown to the types: {dropped:?}",
        file.display()
    );
}

#[test]
fn every_example_parses_into_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in text
            .split("\n---")
            .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        {
            let meta: TypeMeta =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            match meta.kind.as_str() {
                "GolfTrackerStack" => check::<GolfTrackerStack>(doc, &file),
                "SwingAnalysis" => check::<SwingAnalysis>(doc, &file),
                _ => continue,
            }
            kinds.push(meta.kind);
        }
    }
    assert!(
        kinds.iter().filter(|k| *k == "GolfTrackerStack").count() >= 2,
        "examples lost a stack: {kinds:?}"
    );
    assert!(
        kinds.iter().any(|k| k == "SwingAnalysis"),
        "examples lost an analysis: {kinds:?}"
    );
}
