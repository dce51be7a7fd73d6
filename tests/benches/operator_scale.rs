//! Benchmark (not a test): 1000 SwingAnalyses against a stack with a high limit, the
//! release operator as its own process on the local control plane. Prints seconds
//! until 1000 Jobs exist, reconcile p50/p99 (from the operator's own histogram) and
//! the operator's peak RSS, each with its target and the ratio to it.
//!
//! `cargo bench -p golftracker-e2e --bench operator_scale`
//! (`GOLFTRACKER_BENCH_ANALYSES`, `GOLFTRACKER_BENCH_RUNS` change the size and repeats;
//! `GOLFTRACKER_BENCH_RETENTION=Erase` measures analyses that carry the erase finalizer
//! instead of the default Retain.)
//!
//! No job runner: the Jobs are created, not run, so what is measured is the operator.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use golftracker_crds::analysis::SwingAnalysis;
use golftracker_e2e::operator_process::OperatorProcess;
use golftracker_e2e::{
    BUCKET, NAMESPACE, STACK, create_stack_and_secrets, install_crds, start_cluster,
    wait_crds_established, wait_stack_ready,
};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{PartialObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

const TARGET_SECONDS: f64 = 10.0;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_RSS_MIB: f64 = 25.0;
/// The Cargo profile images/operator.Dockerfile builds the operator with.
const OPERATOR_PROFILE: &str = "release-small";

struct Run {
    seconds_to_jobs: f64,
    stack_ready_seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    reconciles: u64,
    peak_rss_mib: f64,
    /// Peak of the anonymous (heap and stack) part, sampled; the rest of the RSS is
    /// the binary's mapped code.
    peak_anon_mib: f64,
    operator_cpu_seconds: f64,
    /// CPU seconds of each local server (kube-apiserver, etcd, MinIO, …) while the
    /// operator ran: on 2 cores they, not the operator, bound the time to the Jobs.
    server_cpu_seconds: Vec<(String, f64)>,
    /// API requests per analysis, by verb and resource, while the operator ran.
    requests: Vec<(String, f64)>,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Quantile `q` of the operator's reconcile-duration histogram for `controller`,
/// interpolated linearly inside its bucket (what PromQL's histogram_quantile does).
fn histogram_quantile(metrics: &str, controller: &str, q: f64) -> (f64, u64) {
    let mut buckets: Vec<(f64, u64)> = metrics
        .lines()
        .filter(|l| l.starts_with("golftracker_operator_reconcile_duration_seconds_bucket{"))
        .filter(|l| l.contains(&format!("controller=\"{controller}\"")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0);
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, count) in &buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return (lower.0, total);
            }
            let inside = (count - lower.1).max(1) as f64;
            return (
                lower.0 + (le - lower.0) * (rank - lower.1 as f64) / inside,
                total,
            );
        }
        lower = (le, count);
    }
    (f64::NAN, total)
}

/// The kube-apiserver's own metrics: on this machine it, not the operator, is
/// where most of the CPU goes, so the bench says what the operator asked of it.
async fn apiserver_metrics(client: &kube::Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

fn metric_value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

/// `apiserver_request_total` summed by verb and resource(/subresource).
fn requests_by_kind(metrics: &str) -> std::collections::BTreeMap<String, f64> {
    let label = |line: &str, name: &str| {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let mut counts = std::collections::BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let (resource, subresource) = (label(line, "resource"), label(line, "subresource"));
        if ![
            "swinganalyses",
            "jobs",
            "events",
            "golftrackerstacks",
            "leases",
            "secrets",
        ]
        .contains(&resource.as_str())
        {
            continue;
        }
        let kind = match subresource.as_str() {
            "" => format!("{} {resource}", label(line, "verb")),
            sub => format!("{} {resource}/{sub}", label(line, "verb")),
        };
        *counts.entry(kind).or_insert(0.0) += metric_value(line).unwrap_or(0.0);
    }
    counts
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // USER_HZ: /proc reports CPU time in hundredths of a second on Linux.
    ticks / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A kB field of /proc/PID/status, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn one_run(
    operator_binary: &std::path::Path,
    analyses: usize,
    retention: &str,
) -> anyhow::Result<Run> {
    let cluster = start_cluster().await?;
    let client = cluster.kube_client()?;
    install_crds(&client).await?;
    wait_crds_established(&client).await?;
    create_stack_and_secrets(&client, &cluster, 1000).await?;
    let s3 = cluster.s3()?.client();
    s3.create_bucket().bucket(BUCKET).send().await?;
    s3.put_object()
        .bucket(BUCKET)
        .key("videos/bench.mp4")
        .body(b"not decoded: the Jobs never run".to_vec().into())
        .send()
        .await?;

    // All analyses exist before the operator starts: its work is what is timed.
    let api: Api<SwingAnalysis> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..analyses)
        .map(|i| {
            let api = api.clone();
            async move {
                let analysis: SwingAnalysis = serde_json::from_value(serde_json::json!({
                    "apiVersion": "golftracker.io/v1alpha1", "kind": "SwingAnalysis",
                    "metadata": {"name": format!("bench-{i:04}"), "namespace": NAMESPACE},
                    "spec": {"stackRef": {"name": STACK}, "video": "videos/bench.mp4",
                             "golfer": {"userId": format!("golfer-{}", i % 50)},
                             "retention": retention},
                }))?;
                api.create(&PostParams::default(), &analysis).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    let kubeconfig = cluster.kube()?.kubeconfig.clone();
    let log = cluster.work_dir().join("operator.log");
    let server_cpu = || {
        cluster
            .servers()
            .map(|s| (s.name.clone(), cpu_seconds(s.pid as u32)))
            .collect::<Vec<_>>()
    };
    let before = apiserver_metrics(&client).await?;
    let cpu_before = server_cpu();
    let started = Instant::now();
    let operator =
        OperatorProcess::spawn_binary(operator_binary, &kubeconfig, &log, "bench", false)?;
    let pid = operator.pid();
    let anon_sampler = tokio::spawn(async move {
        let mut peak = 0f64;
        loop {
            let now = status_mib(pid, "RssAnon:");
            if now.is_nan() {
                return peak;
            }
            peak = peak.max(now);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait_stack_ready(&client, Duration::from_secs(120)).await?;
    let stack_ready_seconds = started.elapsed().as_secs_f64();
    // Watched, not polled: a LIST of a thousand Jobs every 100 ms would load the
    // API server the operator is being measured against.
    let jobs: Api<PartialObjectMeta<Job>> = Api::namespaced(client.clone(), NAMESPACE);
    let managed =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=golftracker-operator");
    let mut created = watcher(jobs, managed)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < analyses {
        let remaining = Duration::from_secs(600).saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, created.try_next()).await {
            Ok(next) => {
                let job = next?.ok_or_else(|| anyhow::anyhow!("the Job watch ended"))?;
                seen.insert(job.name_any());
            }
            Err(_) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                anyhow::bail!(
                    "only {} of {analyses} Jobs after 10 minutes; operator log ends:\n{}",
                    seen.len(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    let seconds_to_jobs = started.elapsed().as_secs_f64();
    let server_cpu_seconds = server_cpu()
        .into_iter()
        .zip(cpu_before)
        .map(|((name, after), (_, before))| (name, after - before))
        .collect();
    // Let the last status writes land before reading the histogram.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = operator.metrics().await?;
    let (p50, reconciles) = histogram_quantile(&metrics, "swinganalysis", 0.50);
    let (p99, _) = histogram_quantile(&metrics, "swinganalysis", 0.99);
    let after = apiserver_metrics(&client).await?;
    let earlier = requests_by_kind(&before);
    let requests = requests_by_kind(&after)
        .into_iter()
        .map(|(kind, count)| {
            let delta = count - earlier.get(&kind).copied().unwrap_or(0.0);
            (kind, delta / analyses as f64)
        })
        .filter(|(_, per_analysis)| *per_analysis > 0.0)
        .collect();
    Ok(Run {
        operator_cpu_seconds: cpu_seconds(operator.pid()),
        server_cpu_seconds,
        requests,
        seconds_to_jobs,
        stack_ready_seconds,
        p50_ms: p50 * 1000.0,
        p99_ms: p99 * 1000.0,
        reconciles,
        peak_rss_mib: peak_rss_mib(operator.pid()),
        peak_anon_mib: {
            let sampled = status_mib(operator.pid(), "RssAnon:");
            drop(operator);
            anon_sampler.await?.max(sampled)
        },
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"operator_scale".contains(&a))
    {
        return Ok(());
    }
    // Built before any clock starts, and always rebuilt: numbers of a stale operator
    // would mislead. The profile is the container image's.
    let built = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--profile",
            OPERATOR_PROFILE,
            "-p",
            "golftracker-operator",
            "--bin",
            "golftracker-operator",
        ])
        .status()?;
    anyhow::ensure!(
        built.success(),
        "building the {OPERATOR_PROFILE} operator failed"
    );
    let operator_binary = std::env::current_exe()?
        .parent()
        .and_then(|deps| deps.parent()?.parent())
        .ok_or_else(|| anyhow::anyhow!("bench binary not under target/<profile>/deps"))?
        .join(OPERATOR_PROFILE)
        .join("golftracker-operator");
    let analyses = env_number("GOLFTRACKER_BENCH_ANALYSES", 1000);
    let runs = env_number("GOLFTRACKER_BENCH_RUNS", 3).max(1);
    let retention =
        std::env::var("GOLFTRACKER_BENCH_RETENTION").unwrap_or_else(|_| "Retain".into());
    let mut results = Vec::new();
    for run in 1..=runs {
        let r = one_run(&operator_binary, analyses, &retention).await?;
        println!(
            "run {run}/{runs}: {analyses} Jobs after {:.2} s (stack Ready after {:.2} s); reconcile p50 {:.1} ms, p99 {:.1} ms over {} reconciles; peak RSS {:.1} MiB (anonymous {:.1} MiB)",
            r.seconds_to_jobs,
            r.stack_ready_seconds,
            r.p50_ms,
            r.p99_ms,
            r.reconciles,
            r.peak_rss_mib,
            r.peak_anon_mib
        );
        println!(
            "  CPU until the last Job: operator {:.1} s (whole run), {}; API requests per analysis: {}",
            r.operator_cpu_seconds,
            r.server_cpu_seconds
                .iter()
                .map(|(name, s)| format!("{name} {s:.1} s"))
                .collect::<Vec<_>>()
                .join(", "),
            r.requests
                .iter()
                .map(|(kind, n)| format!("{kind} {n:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(r);
    }
    let row = |what: &str, value: f64, unit: &str, target: f64| {
        println!(
            "{what:<28} {value:>9.2} {unit:<4} target <= {target:<6} ratio {:.2}{}",
            value / target,
            if value <= target {
                ""
            } else {
                "  (over target)"
            }
        );
    };
    println!(
        "median of {runs} runs, retention {retention}, operator built with profile {OPERATOR_PROFILE}, {} cores:",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    row(
        "seconds to all Jobs",
        median(results.iter().map(|r| r.seconds_to_jobs).collect()),
        "s",
        TARGET_SECONDS,
    );
    println!(
        "{:<28} {:>9.2} ms",
        "reconcile p50",
        median(results.iter().map(|r| r.p50_ms).collect())
    );
    row(
        "reconcile p99",
        median(results.iter().map(|r| r.p99_ms).collect()),
        "ms",
        TARGET_P99_MS,
    );
    row(
        "operator peak RSS",
        median(results.iter().map(|r| r.peak_rss_mib).collect()),
        "MiB",
        TARGET_RSS_MIB,
    );
    Ok(())
}
