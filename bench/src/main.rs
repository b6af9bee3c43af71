//! `switchboard-bench`: Switchboard's benchmarks against DynamoDB Local and the local stack
//! (run through `scripts/bench.sh`). Writes one flat JSON object of metrics, regenerates
//! BENCHMARKS.md and its plots, and exits non-zero when a count-based goal is missed (counts
//! are exact; timings are reported, never asserted).
//!
//! switchboard-bench [--quick] --out FILE [--report FILE] [--plots DIR] [--bootstraps DIR]
//! switchboard-bench --render FILE [--report FILE] [--plots DIR]

mod coldstart;
mod common;
mod matching;
mod plots;
mod proxy;
mod report;
mod sessions;
mod sfu;
mod signaling;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value, json};

use common::{Env, Error};

struct Args {
    quick: bool,
    out: Option<PathBuf>,
    report: PathBuf,
    plots: PathBuf,
    bootstraps: Option<PathBuf>,
    example_server: Option<PathBuf>,
    sfu: Option<PathBuf>,
    sfu_only: bool,
    join_metrics: Option<PathBuf>,
    render: Option<PathBuf>,
    cold_start_only: Option<PathBuf>,
    build_seconds: Option<f64>,
}

const USAGE: &str = "usage: switchboard-bench [--quick] --out FILE [--report FILE] [--plots DIR] \
[--bootstraps DIR] [--build-seconds S] [--example-server PATH] [--sfu PATH] [--join-metrics FILE] | --sfu PATH --sfu-only [--quick] | --cold-start-only DIR | --render FILE [--report FILE] [--plots DIR]";

fn parse_args() -> Result<Args, String> {
    let root = switchboard_local::workspace_root();
    let mut args = Args {
        quick: false,
        out: None,
        report: root.join("BENCHMARKS.md"),
        plots: root.join("docs/bench"),
        bootstraps: None,
        example_server: None,
        sfu: None,
        sfu_only: false,
        join_metrics: None,
        render: None,
        cold_start_only: None,
        build_seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--quick" => args.quick = true,
            "--out" => args.out = Some(value()?.into()),
            "--report" => args.report = value()?.into(),
            "--plots" => args.plots = value()?.into(),
            "--bootstraps" => args.bootstraps = Some(value()?.into()),
            "--example-server" => args.example_server = Some(value()?.into()),
            "--sfu" => args.sfu = Some(value()?.into()),
            "--sfu-only" => args.sfu_only = true,
            "--join-metrics" => args.join_metrics = Some(value()?.into()),
            "--cold-start-only" => args.cold_start_only = Some(value()?.into()),
            "--render" => args.render = Some(value()?.into()),
            "--build-seconds" => {
                args.build_seconds =
                    Some(value()?.parse().map_err(|_| "--build-seconds: a number")?)
            }
            _ => return Err(USAGE.to_string()),
        }
    }
    if args.out.is_none()
        && args.render.is_none()
        && args.cold_start_only.is_none()
        && !args.sfu_only
    {
        return Err(USAGE.to_string());
    }
    Ok(args)
}

fn put(metrics: &mut Map<String, Value>, name: &str, value: impl Into<Value>) {
    metrics.insert(name.to_string(), value.into());
}

fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 && a.is_finite() {
        json!((a / b * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn round(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

/// `200:3990 404:10`: how many answers had each status (0: no answer).
fn statuses(counts: &std::collections::BTreeMap<u16, usize>) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether template.yaml routes `POST /session` (the Sessions API).
fn sessions_route() -> bool {
    let template = switchboard_local::workspace_root().join("template.yaml");
    switchboard_local::Template::load(&template)
        .ok()
        .and_then(|t| t.http_routes().ok())
        .is_some_and(|routes| {
            routes
                .iter()
                .any(|r| r.path == "/session" && r.method.eq_ignore_ascii_case("post"))
        })
}

async fn run(args: &Args) -> Result<Map<String, Value>, Error> {
    let begun = Instant::now();
    let mut m = Map::new();
    put(&mut m, "mode", if args.quick { "quick" } else { "full" });
    let env = Env::start().await?;
    eprintln!(
        "DynamoDB Local up in {:.1} s",
        begun.elapsed().as_secs_f64()
    );

    // Match and claim cost against growing pools, and the Arbiter-style baseline.
    let phase = Instant::now();
    let sizes: &[usize] = if args.quick {
        &[10, 1_000]
    } else {
        &[10, 1_000, 10_000, 100_000]
    };
    let samples = if args.quick { 20 } else { 50 };
    eprintln!("pools {sizes:?}");
    let pools = matching::pools(&env, sizes, samples, if args.quick { 2 } else { 3 }).await?;
    let first = |v: &[matching::PoolPoint]| v.first().cloned().unwrap_or_default();
    let last = |v: &[matching::PoolPoint]| v.last().cloned().unwrap_or_default();
    let calls_per_match = pools.find_match.iter().map(|p| p.calls).fold(0.0, f64::max);
    put(&mut m, "find_match_calls_per_match", round(calls_per_match));
    put(
        &mut m,
        "find_match_items_read_10",
        round(first(&pools.find_match).items),
    );
    put(
        &mut m,
        "find_match_items_read_max",
        round(last(&pools.find_match).items),
    );
    put(
        &mut m,
        "find_match_items_read_ratio",
        ratio(
            last(&pools.find_match).items,
            first(&pools.find_match).items,
        ),
    );
    put(
        &mut m,
        "find_match_p50_ratio",
        ratio(
            last(&pools.find_match).p50_ms,
            first(&pools.find_match).p50_ms,
        ),
    );
    put(
        &mut m,
        "claim_room_items_read_ratio",
        ratio(last(&pools.claim).items, first(&pools.claim).items),
    );
    put(
        &mut m,
        "arbiter_scan_items_read_ratio",
        ratio(last(&pools.arbiter).items, first(&pools.arbiter).items),
    );
    put(
        &mut m,
        "claim_room_calls_per_claim",
        round(pools.claim.iter().map(|p| p.calls).fold(0.0, f64::max)),
    );
    put(
        &mut m,
        "pools",
        sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    for (prefix, points) in [
        ("find_match", &pools.find_match),
        ("claim_room", &pools.claim),
        ("arbiter_scan", &pools.arbiter),
    ] {
        for p in points.iter() {
            put(
                &mut m,
                &format!("{prefix}_items_read_pool_{}", p.pool),
                round(p.items),
            );
            put(
                &mut m,
                &format!("{prefix}_calls_pool_{}", p.pool),
                round(p.calls),
            );
            put(
                &mut m,
                &format!("{prefix}_p50_ms_pool_{}", p.pool),
                round(p.p50_ms),
            );
            put(
                &mut m,
                &format!("{prefix}_samples_pool_{}", p.pool),
                p.samples,
            );
        }
    }
    put(
        &mut m,
        "seconds_pools",
        round(phase.elapsed().as_secs_f64()),
    );

    // Signaling cost.
    let phase = Instant::now();
    eprintln!("handshake and departure");
    let connections = if args.quick { 2_000 } else { 10_000 };
    let hs = signaling::handshake(&env, if args.quick { 10 } else { 20 }, connections).await?;
    put(&mut m, "handshake_calls_per_frame_2", round(hs.calls_2));
    put(&mut m, "handshake_calls_per_frame_50", round(hs.calls_50));
    put(
        &mut m,
        "handshake_calls_ratio_connections",
        ratio(hs.calls_10000_connections, hs.calls_10_connections),
    );
    put(&mut m, "handshake_other_connections", hs.other_connections);
    put(&mut m, "depart_posts_50", hs.depart_posts_50);
    put(
        &mut m,
        "seconds_signaling",
        round(phase.elapsed().as_secs_f64()),
    );

    // Contention.
    let phase = Instant::now();
    let (allocators, hosts) = if args.quick { (50, 400) } else { (50, 4_000) };
    eprintln!("contention: {allocators} allocators, {hosts} hosts");
    let c = matching::contention(&env, allocators, hosts).await?;
    eprintln!("  {c:?}");
    put(
        &mut m,
        "contention_double_allocations",
        c.double_allocations,
    );
    put(
        &mut m,
        "contention_failure_rate",
        round(c.failures as f64 / c.requests.max(1) as f64),
    );
    put(
        &mut m,
        "contention_retries_per_success",
        round(c.retries_per_success),
    );
    put(&mut m, "contention_allocators", c.allocators);
    put(&mut m, "contention_hosts", c.hosts);
    put(&mut m, "contention_requests", c.requests);
    put(&mut m, "contention_successes", c.successes);
    put(&mut m, "contention_failures", c.failures);
    put(&mut m, "contention_honest_404s_after", c.honest_404s_after);
    put(&mut m, "contention_seconds", round(c.seconds));
    put(&mut m, "contention_statuses", statuses(&c.statuses));
    let (paths, per_path) = if args.quick { (20, 16) } else { (100, 64) };
    eprintln!("claim contention: {paths} paths x {per_path}");
    let cc = matching::claim_contention(&env, paths, per_path).await?;
    eprintln!("  {cc:?}");
    put(&mut m, "claim_double_rooms", cc.double_rooms);
    put(&mut m, "claim_paths", cc.paths);
    put(&mut m, "claim_per_path", cc.per_path);
    put(&mut m, "claim_requests", cc.requests);
    put(&mut m, "claim_successes", cc.successes);
    put(&mut m, "claim_seconds", round(cc.seconds));
    put(&mut m, "claim_rooms", cc.rooms);
    put(&mut m, "claim_statuses", statuses(&cc.statuses));
    put(
        &mut m,
        "seconds_contention",
        round(phase.elapsed().as_secs_f64()),
    );

    // Relay latency.
    let phase = Instant::now();
    eprintln!("relay");
    let relay = signaling::relay(&env, if args.quick { 100 } else { 500 }).await?;
    let (relay_p50, relay_p99) = signaling::summary(&relay.relay);
    let (direct_p50, direct_p99) = signaling::summary(&relay.direct);
    put(&mut m, "relay_p50_ms", round(relay_p50));
    put(&mut m, "relay_p99_ms", round(relay_p99));
    put(
        &mut m,
        "relay_ratio_vs_direct",
        ratio(relay_p50, direct_p50),
    );
    put(&mut m, "direct_p50_ms", round(direct_p50));
    put(&mut m, "direct_p99_ms", round(direct_p99));
    put(&mut m, "relay_frames", relay.relay.len());
    put(
        &mut m,
        "seconds_relay",
        round(phase.elapsed().as_secs_f64()),
    );

    // Cold start: only with release binaries (full mode).
    let cold_names = [
        "init_ratio_vs_hello",
        "init_network_calls",
        "init_files_opened",
        "bootstrap_size_ratio_vs_hello",
    ];
    match (&args.bootstraps, args.quick) {
        (Some(dir), false) => {
            let phase = Instant::now();
            eprintln!("cold start from {}", dir.display());
            let scratch = std::env::temp_dir().join(format!("bench-strace-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            let cold = coldstart::measure(dir, 20, &scratch).await?;
            let _ = std::fs::remove_dir_all(&scratch);
            let hello = cold.hello().ok_or("no hello")?;
            let worst = cold
                .functions()
                .max_by(|a, b| a.init_ms.total_cmp(&b.init_ms))
                .ok_or("no functions")?;
            let largest = cold.functions().map(|b| b.size_bytes).max().unwrap_or(0);
            put(
                &mut m,
                "init_ratio_vs_hello",
                ratio(worst.init_ms, hello.init_ms),
            );
            put(
                &mut m,
                "init_network_calls",
                cold.functions().map(|b| b.network_calls).max().unwrap_or(0),
            );
            put(
                &mut m,
                "init_files_opened",
                cold.functions().map(|b| b.files_opened).max().unwrap_or(0),
            );
            put(
                &mut m,
                "bootstrap_size_ratio_vs_hello",
                ratio(largest as f64, hello.size_bytes as f64),
            );
            put(&mut m, "init_worst_function", worst.name.clone());
            for b in &cold.binaries {
                put(&mut m, &format!("init_ms_{}", b.name), round(b.init_ms));
                put(&mut m, &format!("init_files_{}", b.name), b.files_opened);
                put(&mut m, &format!("init_network_{}", b.name), b.network_calls);
                put(&mut m, &format!("bootstrap_bytes_{}", b.name), b.size_bytes);
            }
            put(
                &mut m,
                "seconds_cold_start",
                round(phase.elapsed().as_secs_f64()),
            );
        }
        _ => {
            for name in cold_names {
                put(&mut m, name, Value::Null);
            }
        }
    }
    if let Some(s) = args.build_seconds {
        put(&mut m, "seconds_release_build", round(s));
    }

    // Sessions API: warm-path POST /session, beside the hosted API's 0.5 s.
    put(&mut m, "session_route_present", sessions_route());
    match &args.example_server {
        Some(server) if sessions_route() => {
            let count = if args.quick { 20 } else { 100 };
            eprintln!("warm sessions: {count}");
            let warm = sessions::warm_path(&env, server, count).await?;
            let (p50, p99) = sessions::p50_p99(&warm.samples);
            put(&mut m, "session_warm_p50_ms", round(p50));
            put(&mut m, "session_warm_p99_ms", round(p99));
            put(&mut m, "session_warm_samples", warm.samples.len());
            put(&mut m, "session_warm_not_warm", warm.not_warm);
        }
        _ => {
            put(&mut m, "session_warm_p50_ms", Value::Null);
            put(&mut m, "session_warm_p99_ms", Value::Null);
        }
    }

    // The SFU under load.
    match &args.sfu {
        Some(sfu) => {
            let phase = Instant::now();
            sfu_figures(&env, sfu, args.quick, &mut m).await?;
            put(&mut m, "seconds_sfu", round(phase.elapsed().as_secs_f64()));
        }
        None => put(&mut m, "sfu_silent_pairs", Value::Null),
    }
    // A late joiner's first decoded frame, as the browser test measured it.
    let join: Vec<f64> = args
        .join_metrics
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v["sfu_join_first_frame_ms"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
        })
        .unwrap_or_default();
    if join.is_empty() {
        put(&mut m, "sfu_join_first_frame_ms", Value::Null);
    } else {
        put(
            &mut m,
            "sfu_join_first_frame_ms",
            round(common::median(&join)),
        );
        put(
            &mut m,
            "sfu_join_first_frame_max_ms",
            round(join.iter().copied().fold(0.0, f64::max)),
        );
        put(&mut m, "sfu_join_first_frame_samples", join.len());
    }

    put(
        &mut m,
        "seconds_total",
        round(begun.elapsed().as_secs_f64()),
    );
    for (k, v) in report::machine() {
        put(&mut m, &k, v);
    }
    Ok(m)
}

/// The SFU's figures: quick, one room of 3 (counts only matter); full, rooms of 4 against
/// rooms of 16 at about 1 Mbit/s of VP8 and 50 Opus packets/s per publisher, and one room of 3
/// for the latency with a load generator that has cores to spare. The rated load is the
/// largest measured.
async fn sfu_figures(
    env: &Env,
    sfu: &std::path::Path,
    quick: bool,
    m: &mut Map<String, Value>,
) -> Result<(), Error> {
    const FRAME_BYTES: usize = 5_000; // 25 frames/s: 1 Mbit/s
    const RATED_RUNS: usize = 3;
    let mut probe = None;
    let (small, large) = if quick {
        eprintln!("SFU: one room of 3");
        let small = sfu::load(
            env,
            sfu,
            3,
            1,
            std::time::Duration::from_secs(5),
            FRAME_BYTES,
        )
        .await?;
        (small, None)
    } else {
        let (size_a, rooms_a) = (4, 4);
        let (size_b, rooms_b) = (16, 1);
        // One load for 15 s, its packets, CPU seconds and memory printed.
        let measure = |size: usize, rooms: usize, what: String| async move {
            eprintln!("SFU: {what}");
            let l = sfu::load(
                env,
                sfu,
                size,
                rooms,
                std::time::Duration::from_secs(15),
                FRAME_BYTES,
            )
            .await?;
            eprintln!(
                "  {:?}",
                (l.forwarded_packets, l.sfu_cpu_seconds, l.sfu_rss_mb)
            );
            Ok::<_, Error>(l)
        };
        let a = measure(size_a, rooms_a, format!("{rooms_a} rooms of {size_a}")).await?;
        // The rated load three times, each with a fresh SFU process and participants: on this
        // shared two-core machine the figure moves by about ±15% between runs (the generator's
        // own CPU for the same load moves with it), so the median run is the one reported.
        let mut runs = Vec::new();
        for run in 1..=RATED_RUNS {
            let what = format!("{rooms_b} room(s) of {size_b}, run {run} of {RATED_RUNS}");
            runs.push(measure(size_b, rooms_b, what).await?);
        }
        put(
            m,
            "sfu_rated_runs_packets_per_cpu_second",
            runs.iter()
                .map(|r| round(r.packets_per_cpu_second()))
                .collect::<Vec<_>>(),
        );
        runs.sort_by(|x, y| {
            x.packets_per_cpu_second()
                .total_cmp(&y.packets_per_cpu_second())
        });
        let b = runs.swap_remove(runs.len() / 2);
        eprintln!("SFU: one room of 3 (latency with the generator unsaturated)");
        probe = Some(
            sfu::load(
                env,
                sfu,
                3,
                1,
                std::time::Duration::from_secs(10),
                FRAME_BYTES,
            )
            .await?,
        );
        (a, Some(b))
    };
    let rated = large.as_ref().unwrap_or(&small);
    let all = [Some(&small), large.as_ref(), probe.as_ref()];
    let name = |l: &sfu::Load| format!("{}x{}", l.rooms, l.size);
    put(m, "sfu_rated_load", name(rated));
    match &probe {
        Some(p) => {
            put(m, "sfu_latency_probe_load", name(p));
            put(m, "sfu_unloaded_latency_p50_ms", round(p.p(0.5)));
            put(m, "sfu_unloaded_latency_p99_ms", round(p.p(0.99)));
        }
        None => put(m, "sfu_latency_probe_load", Value::Null),
    }
    put(
        m,
        "sfu_silent_pairs",
        all.iter().flatten().map(|l| l.silent_pairs).sum::<usize>(),
    );
    put(
        m,
        "sfu_self_received",
        all.iter().flatten().map(|l| l.self_received).sum::<usize>(),
    );
    put(
        m,
        "sfu_forwarded_packets_per_cpu_second",
        round(rated.packets_per_cpu_second()),
    );
    put(
        m,
        "sfu_cpu_per_packet_ratio_16_vs_4",
        match &large {
            Some(b) => ratio(b.cpu_us_per_packet(), small.cpu_us_per_packet()),
            None => Value::Null,
        },
    );
    put(
        m,
        "sfu_rss_mb_per_forwarded_stream",
        round(rated.sfu_rss_mb / rated.streams as f64),
    );
    put(m, "sfu_added_latency_p50_ms", round(rated.p(0.5)));
    put(m, "sfu_added_latency_p99_ms", round(rated.p(0.99)));
    for l in all.iter().flatten() {
        let k = |name: &str| format!("sfu_{name}_{}x{}", l.rooms, l.size);
        put(m, &k("forwarded_packets"), l.forwarded_packets);
        put(
            m,
            &k("packets_per_second"),
            round(l.forwarded_packets as f64 / l.seconds),
        );
        put(m, &k("cpu_seconds"), round(l.sfu_cpu_seconds));
        put(m, &k("cpu_share"), round(l.sfu_cpu_seconds / l.seconds));
        put(
            m,
            &k("system_share"),
            round(l.sfu_system_seconds / l.sfu_cpu_seconds),
        );
        put(
            m,
            &k("generator_cpu_share"),
            round(l.generator_cpu_seconds / l.seconds),
        );
        put(m, &k("audio_delivery"), round(l.audio_delivery));
        put(m, &k("window_seconds"), round(l.seconds));
        put(m, &k("cpu_us_per_packet"), round(l.cpu_us_per_packet()));
        put(m, &k("rss_mb"), round(l.sfu_rss_mb));
        put(m, &k("idle_rss_mb"), round(l.idle_rss_mb));
        put(m, &k("streams"), l.streams);
        put(
            m,
            &k("video_fps_per_stream"),
            round(l.video_frames as f64 / l.seconds / (l.streams / 2) as f64),
        );
        put(m, &k("latency_p50_ms"), round(l.p(0.5)));
        put(m, &k("latency_p99_ms"), round(l.p(0.99)));
        put(m, &k("latency_samples"), l.latency_ms.len());
    }
    put(
        m,
        "sfu_loads",
        all.iter()
            .flatten()
            .map(|l| format!("{}x{}", l.rooms, l.size))
            .collect::<Vec<_>>()
            .join(","),
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.cold_start_only {
        // Only the cold start of the release binaries in DIR (one of them bench-hello): for
        // checking a start-up change without the whole run.
        let scratch = std::env::temp_dir().join(format!("bench-strace-{}", std::process::id()));
        let measured = match std::fs::create_dir_all(&scratch).map_err(Error::from) {
            Ok(()) => coldstart::measure(dir, 20, &scratch).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&scratch);
        return match measured {
            Ok(cold) => {
                let hello = cold.hello().map_or(f64::NAN, |h| h.init_ms);
                for b in &cold.binaries {
                    println!(
                        "{:<14} init {:.3} ms ({:.2}x hello), {} files, {} network",
                        b.name,
                        b.init_ms,
                        b.init_ms / hello,
                        b.files_opened,
                        b.network_calls
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cold start failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let (true, Some(sfu)) = (args.sfu_only, &args.sfu) {
        // Only the SFU's figures, printed: for checking an SFU change without the whole run.
        let mut m = Map::new();
        let measured = match Env::start().await {
            Ok(env) => sfu_figures(&env, sfu, args.quick, &mut m).await,
            Err(e) => Err(e),
        };
        return match measured {
            Ok(()) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("SFU benchmark failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let metrics = if let Some(path) = &args.render {
        match std::fs::read_to_string(path)
            .map_err(Error::from)
            .and_then(|t| Ok(serde_json::from_str::<Map<String, Value>>(&t)?))
        {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        match run(&args).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("benchmark failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if let Some(out) = &args.out {
        let text =
            serde_json::to_string_pretty(&Value::Object(metrics.clone())).unwrap_or_default();
        if let Err(e) = std::fs::write(out, text + "\n") {
            eprintln!("{}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    }
    let goals = report::goals(&metrics);
    if let Err(e) = plots::draw(&metrics, &args.plots) {
        eprintln!("plots: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(&args.report, report::render(&metrics, &goals, &args.plots)) {
        eprintln!("{}: {e}", args.report.display());
        return ExitCode::FAILURE;
    }
    let mut missed = 0;
    for g in &goals {
        eprintln!(
            "{:>8}  {}{}",
            g.verdict(),
            g.text,
            if g.counted {
                ""
            } else {
                " (timing: reported, not asserted)"
            }
        );
        if g.counted && g.met == Some(false) {
            missed += 1;
        }
    }
    if missed > 0 {
        eprintln!("{missed} count-based goal(s) missed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
