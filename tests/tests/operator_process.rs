//! The operator as a real process, as in its Pod: killed with SIGKILL mid-work and
//! restarted, and two replicas sharing the leader Lease.

use std::time::Duration;

use golftracker_e2e::operator_process::{OperatorProcess, lease_holder};
use golftracker_e2e::{Harness, synthetic_clip, temp_dir};
use rand::{RngExt, SeedableRng};

async fn wait_for_leader(h: &Harness, identity: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let holder = lease_holder(&h.client).await.unwrap();
        if holder.as_deref() == Some(identity) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{identity} did not become leader in {timeout:?} (holder: {holder:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGKILL at random moments (the seed is printed, and `GOLFTRACKER_E2E_SEED`
/// replays it), ten times while 30 analyses run: afterwards every analysis
/// Succeeded and exactly one Job was ever created for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_killed_ten_times_never_duplicates_jobs() {
    let dir = temp_dir("sigkill");
    let clip = synthetic_clip(&dir, 7).unwrap();
    let h = Harness::start_without_operator(4).await.unwrap();
    let kubeconfig = h.cluster.kube().unwrap().kubeconfig.clone();
    let log = h.cluster.work_dir().join("operator.log");
    let mut operator = OperatorProcess::spawn(&kubeconfig, &log, "operator-0", false).unwrap();
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(60))
        .await
        .unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("sigkill-{i}")).collect();
    for name in &names {
        h.submit(name, &clip, 0, "Retain").await.unwrap();
    }
    let seed = std::env::var("GOLFTRACKER_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("kill moments from seed {seed} (GOLFTRACKER_E2E_SEED={seed} replays them)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=3000))).await;
        operator.kill();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=500))).await;
        operator = OperatorProcess::spawn(&kubeconfig, &log, "operator-0", false).unwrap();
    }
    h.wait_succeeded_with_one_job_each(&names, Duration::from_secs(900))
        .await
        .unwrap();
}

/// Two replicas with leader election: only the Lease holder reconciles; when it is
/// killed, the standby takes the Lease over and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let dir = temp_dir("leader");
    let clip = synthetic_clip(&dir, 7).unwrap();
    let h = Harness::start_without_operator(3).await.unwrap();
    let kubeconfig = h.cluster.kube().unwrap().kubeconfig.clone();
    let log = h.cluster.work_dir().join("operator.log");
    let mut leader = OperatorProcess::spawn(&kubeconfig, &log, "operator-a", true).unwrap();
    wait_for_leader(&h, "operator-a", Duration::from_secs(60)).await;
    let standby = OperatorProcess::spawn(&kubeconfig, &log, "operator-b", true).unwrap();
    golftracker_e2e::wait_stack_ready(&h.client, Duration::from_secs(60))
        .await
        .unwrap();
    let first: Vec<String> = (0..2).map(|i| format!("leader-a-{i}")).collect();
    for name in &first {
        h.submit(name, &clip, 0, "Retain").await.unwrap();
    }
    h.wait_succeeded_with_one_job_each(&first, Duration::from_secs(900))
        .await
        .unwrap();
    assert!(leader.reconciles("swinganalysis").await.unwrap() > 0);
    // Both ready: the leader has synced, the standby is healthy and waiting (a rollout
    // and a PodDisruptionBudget count it).
    for replica in [&leader, &standby] {
        let (code, body) = replica.get("/readyz").await.unwrap();
        assert_eq!(code, 200, "{} /readyz: {body}", replica.identity);
    }
    for controller in ["swinganalysis", "golftrackerstack"] {
        assert_eq!(
            standby.reconciles(controller).await.unwrap(),
            0,
            "the standby reconciled {controller} while not holding the Lease"
        );
    }

    leader.kill();
    wait_for_leader(&h, "operator-b", Duration::from_secs(90)).await;
    let second: Vec<String> = (0..2).map(|i| format!("leader-b-{i}")).collect();
    for name in &second {
        h.submit(name, &clip, 0, "Retain").await.unwrap();
    }
    h.wait_succeeded_with_one_job_each(&second, Duration::from_secs(900))
        .await
        .unwrap();
    assert!(standby.reconciles("swinganalysis").await.unwrap() > 0);
}
