//! Outages for the operator's tests: a stopped server refuses connections, and
//! comes back on the same port with its data.

use golftracker_local_cluster::LocalCluster;

#[tokio::test]
async fn stopped_servers_refuse_and_restart_with_their_data() {
    let mut cluster = LocalCluster::builder()
        .without_kube()
        .without_vault()
        .start()
        .await
        .expect("MinIO and PostgreSQL start");
    let s3 = cluster.s3().unwrap().clone();
    let pg = cluster.postgres().unwrap().clone();
    s3.client()
        .create_bucket()
        .bucket("kept")
        .send()
        .await
        .unwrap();
    let pool = pg.pool().await.unwrap();
    sqlx::query("CREATE TABLE kept (id int)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    cluster.stop_server("minio").unwrap();
    cluster.stop_server("postgres").unwrap();
    assert!(s3.ping().await.is_err(), "MinIO still answers after stop");
    assert!(
        pg.ping().await.is_err(),
        "PostgreSQL still answers after stop"
    );

    cluster.restart_server("minio").await.unwrap();
    cluster.restart_server("postgres").await.unwrap();
    let buckets = s3.client().list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().any(|b| b.name() == Some("kept")));
    let pool = pg.pool().await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'kept'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 1);
    assert!(
        cluster.stop_server("etcd").is_err(),
        "not started: no such server"
    );
}
