//! The CRDs from `crds/` on the real API server: they install, and the server
//! enforces their schema, CEL rules and immutable fields.

use std::time::Duration;

use golftracker_crds::{SwingAnalysis, crd_manifests};
use golftracker_local_cluster::LocalCluster;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition},
};

fn analysis(name: &str, video: &str, priority: i32) -> SwingAnalysis {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "golftracker.io/v1alpha1",
        "kind": "SwingAnalysis",
        "metadata": { "name": name },
        "spec": {
            "stackRef": { "name": "dev" },
            "video": video,
            "golfer": { "userId": "u1" },
            "priority": priority,
        },
    }))
    .unwrap()
}

/// The API server's refusal message for `result`, which must be an error.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => status.message,
        other => panic!("expected the API server to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn crds_install_and_the_server_enforces_their_rules() {
    let cluster = LocalCluster::builder()
        .without_s3()
        .without_vault()
        .without_postgres()
        .start()
        .await
        .expect("kube-apiserver starts");
    let client = cluster.kube_client().unwrap();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for manifest in crd_manifests() {
        let name = manifest.crd.metadata.name.clone().unwrap();
        crds.create(&PostParams::default(), &manifest.crd)
            .await
            .unwrap_or_else(|error| panic!("CRD {name} installs: {error}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .unwrap();
    }

    let analyses: Api<SwingAnalysis> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    analyses
        .create(&post, &analysis("ok", "videos/u1/swing.mp4", 0))
        .await
        .expect("a valid SwingAnalysis is accepted");

    let cel = refusal(
        analyses
            .create(&post, &analysis("bad-uri", "s3://Not_A_Bucket/x.mp4", 0))
            .await,
    );
    assert!(
        cel.contains("spec.video must be an object key or s3://bucket/key"),
        "{cel}"
    );

    let schema = refusal(
        analyses
            .create(&post, &analysis("bad-priority", "v.mp4", 5000))
            .await,
    );
    assert!(schema.contains("spec.priority"), "{schema}");

    let immutable = refusal(
        analyses
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "video": "videos/u1/other.mp4" } })),
            )
            .await,
    );
    assert!(immutable.contains("spec.video is immutable"), "{immutable}");
}
