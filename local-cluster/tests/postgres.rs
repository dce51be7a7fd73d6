//! sqlx against the local PostgreSQL: connect, migrate, use the schema.

use golftracker_local_cluster::LocalCluster;

#[tokio::test]
async fn sqlx_connects_and_migrates() {
    let cluster = LocalCluster::builder()
        .without_kube()
        .without_s3()
        .without_vault()
        .start()
        .await
        .expect("PostgreSQL starts");
    let pool = cluster.postgres().unwrap().pool().await.expect("connect");

    sqlx::migrate!("tests/migrations")
        .run(&pool)
        .await
        .expect("migration runs");

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO swings (golfer, club_speed_mph) VALUES ($1, $2) RETURNING id",
    )
    .bind("ada")
    .bind(98.5_f32)
    .fetch_one(&pool)
    .await
    .unwrap();
    let golfer: String = sqlx::query_scalar("SELECT golfer FROM swings WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(golfer, "ada");
    let refused = sqlx::query("INSERT INTO swings (golfer, club_speed_mph) VALUES ('bob', -1)")
        .execute(&pool)
        .await;
    assert!(refused.is_err(), "the migrated CHECK constraint holds");

    // Password authentication is really on: a wrong password is refused.
    let mut wrong = cluster.postgres().unwrap().clone();
    wrong.password.push('x');
    assert!(wrong.pool().await.is_err());
}
