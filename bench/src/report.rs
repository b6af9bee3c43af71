//! BENCHMARKS.md: method, machine, the figures beside published anchors, and each goal with
//! whether this run met it. Rendered from the flat metrics alone, so `--render` can redo it.

use std::fmt::Write;
use std::path::Path;

use serde_json::{Map, Value};

pub struct Goal {
    pub text: String,
    pub met: Option<bool>,
    /// Count-based goals are asserted (exit code); timing goals are only reported.
    pub counted: bool,
    pub measured: String,
}

impl Goal {
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not run",
        }
    }
}

fn num(m: &Map<String, Value>, key: &str) -> Option<f64> {
    m.get(key).and_then(Value::as_f64)
}

fn show(m: &Map<String, Value>, key: &str) -> String {
    match m.get(key) {
        None | Some(Value::Null) => "—".to_string(),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or_default();
            if x.fract() == 0.0 {
                format!("{}", x as i64)
            } else if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        }
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

pub fn goals(m: &Map<String, Value>) -> Vec<Goal> {
    let mut goals = vec![];
    let mut goal = |text: &str, keys: &[&str], counted: bool, test: &dyn Fn(&[f64]) -> bool| {
        let values: Option<Vec<f64>> = keys.iter().map(|k| num(m, k)).collect();
        let measured = keys
            .iter()
            .map(|k| format!("`{k}` = {}", show(m, k)))
            .collect::<Vec<_>>()
            .join(", ");
        goals.push(Goal {
            text: text.to_string(),
            met: values.map(|v| test(&v)),
            counted,
            measured,
        });
    };
    goal(
        "find-match items read do not grow with the pool (ratio ≤ 1.05)",
        &["find_match_items_read_ratio"],
        true,
        &|v| v[0] <= 1.05,
    );
    goal(
        "claimRoom items read do not grow with the pool (ratio ≤ 1.05)",
        &["claim_room_items_read_ratio"],
        true,
        &|v| v[0] <= 1.05,
    );
    goal(
        "≤ 2 DynamoDB requests per successful match",
        &["find_match_calls_per_match"],
        true,
        &|v| v[0] <= 2.0,
    );
    goal(
        "handshake: the same DynamoDB requests per frame in rooms of 2 and 50",
        &[
            "handshake_calls_per_frame_2",
            "handshake_calls_per_frame_50",
        ],
        true,
        &|v| v[0] == v[1],
    );
    goal(
        "handshake: the same DynamoDB requests per frame with 10 and 10,000 connections",
        &["handshake_calls_ratio_connections"],
        true,
        &|v| v[0] == 1.0,
    );
    goal(
        "one departure from a room of 50: exactly 49 posts",
        &["depart_posts_50"],
        true,
        &|v| v[0] == 49.0,
    );
    goal(
        "0 double allocations under contention",
        &["contention_double_allocations"],
        true,
        &|v| v[0] == 0.0,
    );
    goal(
        "failure rate under contention ≤ 0.1% (Agones scenario test: 1.3%)",
        &["contention_failure_rate"],
        true,
        &|v| v[0] <= 0.001,
    );
    goal(
        "0 rooms given to two paths (or two rooms to one path) under concurrent claims",
        &["claim_double_rooms"],
        true,
        &|v| v[0] == 0.0,
    );
    goal(
        "no network during init",
        &["init_network_calls"],
        true,
        &|v| v[0] == 0.0,
    );
    goal(
        "init ≤ 1.5× a lambda_runtime hello world",
        &["init_ratio_vs_hello"],
        false,
        &|v| v[0] <= 1.5,
    );
    goal(
        "SFU: every subscriber receives every other participant's packets, and no sender its own",
        &["sfu_silent_pairs", "sfu_self_received"],
        true,
        &|v| v[0] == 0.0 && v[1] == 0.0,
    );
    goal(
        "SFU: ≥ 100,000 forwarded packets per second of the SFU's CPU time (LiveKit's published run: ≈ 56,000 per vCPU-second)",
        &["sfu_forwarded_packets_per_cpu_second"],
        false,
        &|v| v[0] >= 100_000.0,
    );
    goal(
        "SFU: CPU per forwarded packet in rooms of 16 ≤ 1.3× that in rooms of 4",
        &["sfu_cpu_per_packet_ratio_16_vs_4"],
        false,
        &|v| v[0] <= 1.3,
    );
    goal(
        "SFU: ≤ 1.5 MB of resident memory per forwarded stream (eduMEET's sizing: about 5 MB per participant)",
        &["sfu_rss_mb_per_forwarded_stream"],
        false,
        &|v| v[0] <= 1.5,
    );
    goal(
        "SFU: packet in → packet out p50 ≤ 1 ms and p99 ≤ 5 ms at the rated load",
        &["sfu_added_latency_p50_ms", "sfu_added_latency_p99_ms"],
        false,
        &|v| v[0] <= 1.0 && v[1] <= 5.0,
    );
    goal(
        "SFU: a late joiner's first decoded frame p50 ≤ 1,000 ms (Chromium, the browser test)",
        &["sfu_join_first_frame_ms"],
        false,
        &|v| v[0] <= 1000.0,
    );
    goals
}

/// Facts about this machine, recorded with the figures.
pub fn machine() -> Vec<(String, Value)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0).round())
        .unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        (
            "machine_cpus".into(),
            Value::from(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0),
            ),
        ),
        ("machine_cpu".into(), Value::from(cpu)),
        ("machine_memory_gib".into(), Value::from(memory_gib)),
        ("machine_os".into(), Value::from(os)),
        ("machine_rustc".into(), Value::from(rustc)),
    ]
}

pub fn render(m: &Map<String, Value>, goals: &[Goal], plots: &Path) -> String {
    let quick = m.get("mode").and_then(Value::as_str) == Some("quick");
    let plot_dir = plots
        .strip_prefix(switchboard_local::workspace_root())
        .unwrap_or(plots)
        .display()
        .to_string()
        .trim_start_matches("./")
        .to_string();
    let pools: Vec<String> = m
        .get("pools")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let v = |k: &str| show(m, k);
    let mut o = String::new();
    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "Generated by `scripts/bench.sh{}` (`bench/`, binary `switchboard-bench`) — do not edit by hand; \
         rerun it. This run: **{} mode**, {} s in all{}. The same figures as one flat JSON object are what \
         `--out` wrote.\n",
        if quick { " --quick" } else { "" },
        if quick { "quick" } else { "full" },
        v("seconds_total"),
        match m.get("seconds_release_build").and_then(Value::as_f64) {
            Some(s) => format!(" after a {s:.0} s release build of the function binaries"),
            None => String::new(),
        }
    );
    let _ = writeln!(o, "## Goals\n");
    let _ = writeln!(o, "| goal | this run | verdict |\n|---|---|---|");
    for g in goals {
        let _ = writeln!(
            o,
            "| {}{} | {} | **{}** |",
            g.text,
            if g.counted {
                ""
            } else {
                " (timing: reported, not asserted)"
            },
            g.measured,
            g.verdict()
        );
    }
    let _ = writeln!(
        o,
        "\nCount-based goals (DynamoDB requests, items read, posts, double allocations, failed \
         requests, connections during init) are exact and `scripts/bench.sh` fails when one is missed; \
         CI runs `--quick`. Timings depend on the machine and are given as ratios measured in the \
         same run.\n"
    );
    let _ = writeln!(o, "## Machine and method\n");
    let _ = writeln!(
        o,
        "- Machine: {} CPUs ({}), {} GiB, {}, {}; shared with other builds while it ran, so \
           absolute times are noisy — ratios within one run are what to compare.",
        v("machine_cpus"),
        v("machine_cpu"),
        v("machine_memory_gib"),
        v("machine_os"),
        v("machine_rustc")
    );
    let _ = writeln!(
        o,
        "- Everything runs on 127.0.0.1: DynamoDB Local (AWS's jar, in memory), and the local stack \
           (`switchboard_local::Stack`), which runs the production handlers behind its HTTP API, \
           WebSocket gateway and `@connections` endpoint. Each benchmark gets its own tables and a \
           clock frozen at its start, so nothing it loaded expires while it runs. The harness is \
           built with the dev profile; the cold-start binaries with the release profile."
    );
    let _ = writeln!(
        o,
        "- **DynamoDB requests are counted for real**: the stack's DynamoDB endpoint is a counting \
           HTTP proxy in front of DynamoDB Local (`bench/src/proxy.rs`). It counts every request by \
           operation (`X-Amz-Target`), sums `ScannedCount` from Query and Scan answers (the items \
           DynamoDB examined: \"items read\"), and counts conditional writes DynamoDB refused \
           (retries under contention). Posts to sockets are counted as frames the clients received."
    );
    let _ = writeln!(
        o,
        "- **Pools** ({}) are loaded with BatchWriteItem: idle hosts shaped exactly as \
           `Store::heartbeat` writes them, plus a quarter as many busy hosts, and ready SFU rooms \
           shaped exactly as `attach_sfu` leaves them; the benchmark first compares the attribute \
           names with a real heartbeat's and a real ready room's and stops if they differ. Pools \
           grow in one set of tables. At each size, {} sequential find-match and {} claimRoom calls \
           go through the HTTP API (medians reported; after each, the host or room is put back, \
           uncounted, so the pool keeps its size).",
        pools.join(", "),
        v(&format!(
            "find_match_samples_pool_{}",
            pools.first().map(String::as_str).unwrap_or("10")
        )),
        v(&format!(
            "claim_room_samples_pool_{}",
            pools.first().map(String::as_str).unwrap_or("10")
        )),
    );
    let _ = writeln!(
        o,
        "- **Arbiter baseline** (`arbiter_claim` in `bench/src/matching.rs`): the same claim \
           workload done the way Arbiter is described as doing it (the project's notes; Arbiter's source was not re-read for this) — every claim is a full table Scan with a filter for \
           unclaimed ready rooms, then a conditional update of the first one and a put of the path \
           — against the same tables through the same proxy."
    );
    let _ = writeln!(
        o,
        "- **Signaling**: real WebSocket clients in a host room (the host identified with its \
           hostId, clients by roomId). A handshake frame from a client addressed to the host \
           (`receiver`) is sent {} times per setting; the other connections are connection and \
           member items written as `join_room` writes them ({} in the large setting). One client \
           of a room of 50 (host + 49 clients) closes its socket, and every other member counts \
           the `clientDisconnect` frames it receives.",
        if quick { 10 } else { 20 },
        v("handshake_other_connections")
    );
    let _ = writeln!(
        o,
        "- **Contention**: {} allocators at once call find-match until as many requests as idle \
           hosts ({}) were made; the clock is frozen, so every host stays matchable until matched and \
           every request should get one — a 404 while a host is idle counts as a failure, as does \
           any other status. Afterwards {} more requests must each get an honest 404 (this run: \
           {}). Retries are the reservations DynamoDB refused, per success. Claims: {} concurrent \
           claimRoom calls for each of {} paths (4 paths at a time) against {} ready rooms.",
        v("contention_allocators"),
        v("contention_hosts"),
        v("contention_allocators"),
        v("contention_honest_404s_after"),
        v("claim_per_path"),
        v("claim_paths"),
        m.get("claim_paths")
            .and_then(Value::as_u64)
            .map(|p| (p + p / 2).to_string())
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "- **Relay**: a handshake frame client → client through the local stack (gateway, \
           handshake handler, DynamoDB reads, `@connections` post), {} frames one at a time, from \
           send to receipt; the same frames to a plain WebSocket echo server in the benchmark \
           (`echo_server`) are the floor any relay has here.",
        v("relay_frames")
    );
    let _ = writeln!(
        o,
        "- **Cold start**: each function's release `bootstrap` is started as Lambda starts one, \
           with Lambda's environment and `AWS_LAMBDA_RUNTIME_API` pointing at a stub on 127.0.0.1 \
           that only records the first `GET /2018-06-01/runtime/invocation/next`. Init is the time \
           from exec to that request (median of 20 starts, all binaries interleaved), divided by \
           that of `bench/hello`, a `lambda_runtime` hello world from the same release build. One \
           more start of each under `strace -f -e trace=connect,openat` counts the files opened \
           and connections other than to the stub.{}\n",
        if quick {
            " **Skipped in quick mode** (release builds take minutes here): the cold-start figures are null."
        } else {
            ""
        }
    );

    let _ = writeln!(o, "## Match and claim cost against the pool\n");
    let _ = writeln!(
        o,
        "![items read per operation against the pool]({plot_dir}/items_read.svg)\n"
    );
    let _ = writeln!(
        o,
        "| pool | find-match requests | find-match items read | find-match p50 ms | claimRoom requests | claimRoom items read | claimRoom p50 ms | Arbiter Scan items read | Arbiter p50 ms |\n|---|---|---|---|---|---|---|---|---|"
    );
    for p in &pools {
        let _ = writeln!(
            o,
            "| {p} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v(&format!("find_match_calls_pool_{p}")),
            v(&format!("find_match_items_read_pool_{p}")),
            v(&format!("find_match_p50_ms_pool_{p}")),
            v(&format!("claim_room_calls_pool_{p}")),
            v(&format!("claim_room_items_read_pool_{p}")),
            v(&format!("claim_room_p50_ms_pool_{p}")),
            v(&format!("arbiter_scan_items_read_pool_{p}")),
            v(&format!("arbiter_scan_p50_ms_pool_{p}")),
        );
    }
    let _ = writeln!(
        o,
        "\n![p50 latency against the pool]({plot_dir}/latency.svg)\n"
    );
    let _ = writeln!(
        o,
        "| metric | value |\n|---|---|\n\
         | `find_match_calls_per_match` | {} |\n\
         | `find_match_items_read_10` | {} |\n\
         | `find_match_items_read_max` | {} |\n\
         | `find_match_items_read_ratio` | {} |\n\
         | `find_match_p50_ratio` | {} |\n\
         | `claim_room_items_read_ratio` | {} |\n\
         | `arbiter_scan_items_read_ratio` | {} |\n",
        v("find_match_calls_per_match"),
        v("find_match_items_read_10"),
        v("find_match_items_read_max"),
        v("find_match_items_read_ratio"),
        v("find_match_p50_ratio"),
        v("claim_room_items_read_ratio"),
        v("arbiter_scan_items_read_ratio"),
    );
    let _ = writeln!(
        o,
        "A match is one Query of the sparse `IdleHosts` index (live idle hosts of one region, \
         freshest first, `Limit` {}) and one conditional update; a claim one read of the path, one \
         Query of `ReadyRooms`, one transaction (path and room), and one read of the room for the \
         warm-pool slot it vacated. Both read at most their query's limit, however \
         large the pool. The Arbiter-style claim reads the whole table every time, so its items read \
         grow with the pool ({}× from the smallest to the largest pool here).\n",
        v("find_match_items_read_max"),
        v("arbiter_scan_items_read_ratio")
    );

    let _ = writeln!(o, "## Signaling\n");
    let _ = writeln!(
        o,
        "| metric | value |\n|---|---|\n\
         | `handshake_calls_per_frame_2` | {} |\n\
         | `handshake_calls_per_frame_50` | {} |\n\
         | `handshake_calls_ratio_connections` ({} connections ÷ 10) | {} |\n\
         | `depart_posts_50` | {} |\n\
         | `relay_p50_ms` | {} |\n\
         | `relay_p99_ms` | {} |\n\
         | echo server p50 / p99 ms | {} / {} |\n\
         | `relay_ratio_vs_direct` | {} |\n",
        v("handshake_calls_per_frame_2"),
        v("handshake_calls_per_frame_50"),
        v("handshake_other_connections"),
        v("handshake_calls_ratio_connections"),
        v("depart_posts_50"),
        v("relay_p50_ms"),
        v("relay_p99_ms"),
        v("direct_p50_ms"),
        v("direct_p99_ms"),
        v("relay_ratio_vs_direct"),
    );
    let _ = writeln!(
        o,
        "A handshake reads the sender's connection, its membership and the receiver's membership \
         by key (strongly consistent), then posts once: nothing in it depends on the room's size \
         or on other rooms. Arbiter, as described in the project's notes, Scans the whole table \
         for every signaling message as well. The relay ratio is the cost of going through API Gateway's \
         model (a handler per frame, three key reads, a management-API post) instead of a \
         stateful socket server, on this machine with DynamoDB Local.\n"
    );

    let _ = writeln!(o, "## Contention\n");
    let _ = writeln!(
        o,
        "| metric | value |\n|---|---|\n\
         | allocators × idle hosts | {} × {} |\n\
         | requests / matched | {} / {} |\n\
         | `contention_double_allocations` | {} |\n\
         | `contention_failure_rate` | {} |\n\
         | `contention_retries_per_success` | {} |\n\
         | seconds | {} |\n\
         | claims: paths × concurrent per path | {} × {} |\n\
         | `claim_double_rooms` | {} |\n",
        v("contention_allocators"),
        v("contention_hosts"),
        v("contention_requests"),
        v("contention_successes"),
        v("contention_double_allocations"),
        v("contention_failure_rate"),
        v("contention_retries_per_success"),
        v("contention_seconds"),
        v("claim_paths"),
        v("claim_per_path"),
        v("claim_double_rooms"),
    );
    let _ = writeln!(
        o,
        "Anchors (checked in googleforgames/agones): the allocation load test \
         (`test/load/allocation/README.md`) allocates 4,000 ready game servers from parallel \
         clients (e.g. 40 × 100) and shows failures such as \"the object has been modified\"; \
         issue #1856 reports contention errors from the allocator service when run with 50 \
         parallel clients and 4,000 game servers (its allocator pods cache game servers and race \
         each other); the scenario test's sample output ends with 6,841 failures in 523,204 \
         allocations (1.3%). Here a reservation is one conditional write on the host item, so a \
         lost race costs one refused write and the next candidate, never a double allocation; \
         a round that loses every race reads a wider candidate set.\n"
    );

    let _ = writeln!(o, "## Cold start\n");
    if m.get("init_ratio_vs_hello").is_some_and(Value::is_null) {
        let _ = writeln!(
            o,
            "Not measured in this run (quick mode skips the release build). Prior measurement, for \
             reference: find-match init 6.8 ms vs hello 2.5 ms (2.7×), 157 openat calls vs 8 (it \
             read every file in /etc/ssl/certs, and ~/.aws/config), 9.7 MB vs 1.0 MB binaries.\n"
        );
    } else {
        let _ = writeln!(o, "![init time per function]({plot_dir}/cold_start.svg)\n");
        let _ = writeln!(
            o,
            "| binary | init ms (median) | files opened | connections besides the Runtime API | size MB |\n|---|---|---|---|---|"
        );
        let mut names: Vec<&str> = m
            .keys()
            .filter_map(|k| k.strip_prefix("init_ms_"))
            .collect();
        names.sort();
        for name in names {
            let _ = writeln!(
                o,
                "| {name} | {} | {} | {} | {:.1} |",
                v(&format!("init_ms_{name}")),
                v(&format!("init_files_{name}")),
                v(&format!("init_network_{name}")),
                num(m, &format!("bootstrap_bytes_{name}")).unwrap_or_default() / 1e6
            );
        }
        let _ = writeln!(
            o,
            "\n| metric | value |\n|---|---|\n\
             | `init_ratio_vs_hello` (worst: {}) | {} |\n\
             | `init_network_calls` | {} |\n\
             | `init_files_opened` | {} |\n\
             | `bootstrap_size_ratio_vs_hello` | {} |\n",
            v("init_worst_function"),
            v("init_ratio_vs_hello"),
            v("init_network_calls"),
            v("init_files_opened"),
            v("bootstrap_size_ratio_vs_hello"),
        );
        let _ = writeln!(
            o,
            "Prior measurement: find-match init 6.8 ms vs hello 2.5 ms (2.7×), 157 openat calls vs \
             8 (every file in /etc/ssl/certs, and ~/.aws/config), 9.7 MB vs 1.0 MB binaries.\n\n\
             What changed since: the functions trust the five Amazon Trust Services roots, \
             compiled in (`switchboard::tls`), instead of reading and parsing the system's CA \
             store once per SDK client; in Lambda's environment the SDK configuration is built \
             directly instead of through the loader's provider chains and profile files \
             (`Deps::from_env`); logs go through a plain level filter instead of the runtime's \
             `EnvFilter`, and ECS clients are built on first use. And every Lambda binary, hello \
             included, is linked without PIE (`build/lambda-link.rs`): a PIE is relocated \
             by the dynamic loader at every start, and a function carrying the AWS SDK has \
             19,000-25,000 relative relocations against hello's 2,230, on pages the loader must \
             copy to write. Where the rest goes (timed inside a release build): \
             `switchboard::init` takes about 0.36 ms, most of it constructing the DynamoDB \
             client (about 0.2 ms the first time: the SDK's runtime plugins and its partition \
             table, which the first request would need anyway); the remainder is page faults in a \
             binary several times hello's size. Building without PIE (`SWITCHBOARD_PIE=1` keeps \
             it) gives up ASLR for the executable's own image, as a Go binary built with Go's \
             defaults does; the stack, heap and shared libraries stay randomized.\n"
        );
    }
    let _ = writeln!(
        o,
        "Anchor: maxday/lambda-perf measures Lambda cold starts on AWS daily; as cited for this \
         project, a Rust hello world on `provided.al2023` (zip) initialises in about 14 ms on \
         average, against about 120 ms for Node.js 22 and about 80 ms for Python 3.13 (the \
         dashboard's figures move daily and were not re-read for this run). Those are in-AWS \
         figures including the sandbox; the figures above are process start to first poll on \
         this machine, so compare the ratio to hello, not the milliseconds.\n"
    );

    let _ = writeln!(o, "## What the benchmark changed in the code\n");
    let _ = writeln!(
        o,
        "- Items read per match and per claim were 16 for any pool of 16 or more and 10 for a \
           pool of 10 (ratio 1.6): the query `Limit` was 16. It is 10 now, the same for 10 hosts \
           and 100,000; a round that loses every race reads a wider set (up to 160).\n\
         - Under contention (50 allocators, 4,000 hosts) 24 requests (0.6%) got a 404 while \
           hosts were idle: every loser re-read the head of the `IdleHosts` index, where new \
           requests fight too. A lost round now reads on down the index, past the hosts it \
           found taken.\n\
         - Cold start: compiled-in Amazon Trust Services roots and a direct SDK configuration in \
           Lambda's environment (above): 157 files opened at init to 8, as many as hello.\n\
         - Cold start, second pass: the init ratio was still 1.63 (goal 1.5). Half of the gap was \
           the runtime's default log subscriber compiling its `EnvFilter` directives; functions \
           now log through a plain level filter, and build their ECS clients on first use \
           (most never call ECS). Measured with `switchboard-bench --cold-start-only DIR`: the \
           worst function at 1.48x, 1.54x and 1.58x hello, at the goal's edge.\n\
         - Cold start, third pass: `perf` showed the dynamic loader relocating the binary as the \
           larger part of the rest (19,000-25,000 relative relocations per function against \
           hello's 2,230, and about 65 more copy-on-write page faults), and `switchboard::init` \
           itself at about 0.36 ms. Every Lambda binary, hello included, is now linked without \
           PIE (`build/lambda-link.rs`; checked to build for arm64 with cargo-lambda). The \
           same four functions side by side, three interleaved runs: 1.27-1.38x hello without \
           PIE, 1.42-1.58x with it. All twenty, three more runs after this table's: worst \
           1.40x, 1.39x, 1.33x.\n"
    );

    sfu_section(&mut o, m);

    let _ = writeln!(o, "## Sessions API\n");
    match (
        m.get("session_warm_p50_ms").and_then(Value::as_f64),
        m.get("session_warm_p99_ms").and_then(Value::as_f64),
    ) {
        (Some(p50), Some(p99)) => {
            let samples = m
                .get("session_warm_samples")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let _ = writeln!(
                o,
                "Warm-path `POST /session` through the local stack ({samples} sessions, one at a \
                 time, each a real example-server process already identified on the signaling \
                 socket, allocated with one conditional transaction and told its session over \
                 the socket): p50 **{p50:.1} ms**, p99 **{p99:.1} ms**, beside the hosted \
                 session API's promise of \"host IP and port in under 0.5 seconds\" (500 ms): {}. \
                 Dev-profile handlers and DynamoDB Local on this 2-core machine; deployed, each \
                 DynamoDB call is a few milliseconds.\n",
                if p99 < 500.0 { "met" } else { "missed" }
            );
        }
        _ => {
            let _ = writeln!(
                o,
                "`session_warm_p50_ms`, `session_warm_p99_ms`: not measured in this run (null).\n"
            );
        }
    }
    o
}

fn sfu_section(o: &mut String, m: &Map<String, Value>) {
    let v = |k: &str| show(m, k);
    let _ = writeln!(o, "## The SFU\n");
    let loads: Vec<String> = m
        .get("sfu_loads")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if loads.is_empty() {
        let _ = writeln!(o, "Not measured in this run (no `--sfu`).\n");
        return;
    }
    let _ = writeln!(
        o,
        "`switchboard-sfu` processes, one per room as the local stack's ECS endpoint starts them \
         for createRoom, joined through the stack's signaling socket by str0m participants \
         (`switchboard_sfu::testing`, in the benchmark process): each participant publishes VP8 \
         (25 frames/s of 5,000 bytes, about 1 Mbit/s) and Opus (50 packets/s) on its producer \
         connection and answers one consumer connection per other participant, each on its own \
         UDP socket. After everyone receives everyone, a window of measurement: forwarded packets \
         are the RTP packets arriving on the participants' consumer sockets; CPU is the SFU \
         processes' own utime + stime from `/proc/<pid>/stat` (the load generator shares the \
         cores, and does not count); memory is their VmRSS at the end of the window. The \
         generator's threads run at niceness 10, so the SFU, as on a machine of its own, does not \
         wait for a core behind them, and they read their sockets every 2 ms instead of sleeping \
         on them: on the loopback interface, waking a receiver asleep on its socket is done by \
         the sender's system call, so the SFU's CPU time would count each receiver's wake-up (a \
         network's receivers are woken on their own machines). Latency is each audio packet's \
         time from the sender's write (the packet leaves at once) to the kernel's receive \
         timestamp on the receiver's socket (`SO_TIMESTAMPNS`), both in the generator's process: \
         what the SFU adds, plus the loopback and the sender's encryption, without the \
         receiver's own queue.\n"
    );
    if m.get("seconds_sfu").is_some_and(Value::is_null) {
        let _ = writeln!(
            o,
            "These SFU figures were measured apart from the rest of this report, with \
             `switchboard-bench --sfu PATH --sfu-only` (the SFU built with profile `sfu`, as its \
             image is) and the browser test's late joiners, and merged into its JSON{}.\n",
            match m.get("sfu_conditions").and_then(Value::as_str) {
                Some(conditions) => format!(": {conditions}"),
                None => String::new(),
            }
        );
    }
    let _ = writeln!(
        o,
        "| load (rooms × size) | forwarded packets/s | SFU CPU (share of a core; in the kernel) | µs of SFU CPU per packet | RSS MB (idle SFU) | forwarded streams | video frames/s per stream | generator CPU (cores) | audio delivered | latency p50 / p99 ms (samples) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for l in &loads {
        let k = |name: &str| v(&format!("sfu_{name}_{l}"));
        let _ = writeln!(
            o,
            "| {l} | {} | {} ({}) | {} | {} ({}) | {} | {} | {} | {} | {} / {} ({}) |",
            k("packets_per_second"),
            k("cpu_share"),
            k("system_share"),
            k("cpu_us_per_packet"),
            k("rss_mb"),
            k("idle_rss_mb"),
            k("streams"),
            k("video_fps_per_stream"),
            k("generator_cpu_share"),
            k("audio_delivery"),
            k("latency_p50_ms"),
            k("latency_p99_ms"),
            k("latency_samples"),
        );
    }
    let _ = writeln!(
        o,
        "\n| metric | value |\n|---|---|\n\
         | `sfu_forwarded_packets_per_cpu_second` | {}{} |\n\
         | `sfu_cpu_per_packet_ratio_16_vs_4` | {} |\n\
         | `sfu_rss_mb_per_forwarded_stream` | {} |\n\
         | `sfu_added_latency_p50_ms` / `_p99_ms` | {} / {} |\n\
         | `sfu_join_first_frame_ms` (p50 of {} late joins; max {}) | {} |\n\
         | `sfu_silent_pairs` / `sfu_self_received` | {} / {} |\n",
        v("sfu_forwarded_packets_per_cpu_second"),
        match m
            .get("sfu_rated_runs_packets_per_cpu_second")
            .and_then(Value::as_array)
        {
            Some(runs) if runs.len() > 1 => format!(
                " (the median of {} runs of the rated load, each a fresh SFU: {})",
                runs.len(),
                runs.iter()
                    .map(|r| r.as_f64().map_or("?".into(), |x| format!("{x:.0}")))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            _ => String::new(),
        },
        v("sfu_cpu_per_packet_ratio_16_vs_4"),
        v("sfu_rss_mb_per_forwarded_stream"),
        v("sfu_added_latency_p50_ms"),
        v("sfu_added_latency_p99_ms"),
        v("sfu_join_first_frame_samples"),
        v("sfu_join_first_frame_max_ms"),
        v("sfu_join_first_frame_ms"),
        v("sfu_silent_pairs"),
        v("sfu_self_received"),
    );
    let _ = writeln!(
        o,
        "Anchors: LiveKit's published benchmark (a 720p simulcast meeting of 150 publishers and \
         150 subscribers) sends about 763,000 packets/s at 85% of 16 vCPUs, about 56,000 packets \
         per vCPU-second; mediasoup's guidance is about 500 consumers per worker, one core. \
         eduMEET sizes about 5 MB of memory per participant. The time to a late joiner's first \
         frame comes from the browser test (`tests/e2e/sfu.test.mjs`, Chromium, fake camera): \
         from pressing Join (getRoomId, identify, offers) to the first decoded frame of each \
         participant already in the room.\n"
    );
    let _ = writeln!(o, "{}", sfu_analysis(m, &loads));
}

/// What the SFU figures say, worded from the figures themselves.
fn sfu_analysis(m: &Map<String, Value>, loads: &[String]) -> String {
    let n = |k: String| num(m, &k);
    let per_load = |name: &str| -> Vec<(String, f64)> {
        loads
            .iter()
            .filter_map(|l| Some((l.clone(), n(format!("sfu_{name}_{l}"))?)))
            .collect()
    };
    let mut text = String::from(
        "What these figures say about the SFU (from its code and the loads above): it forwards \
         each RTP packet as it arrives (str0m's RTP mode: decrypted, the SSRC, payload type and \
         sequence number rewritten for each receiver, encrypted again; never reassembled into \
         frames nor packetized again). One turn of its loop reads up to 32 datagrams, writes \
         each forwarded packet into its receivers' send streams, and polls each receiver once \
         for all of them (str0m handles a timeout per poll), sending whenever 64 forwarded \
         packets wait and at the end of the turn (`sendmmsg`, up to 32 datagrams a system \
         call). Consumer connections negotiate no transport-wide congestion control: the SFU \
         estimates no bandwidth, so that feedback would cost both ends per packet for nothing.",
    );
    let us = per_load("cpu_us_per_packet");
    if let (Some(lo), Some(hi)) = (
        us.iter().map(|(_, x)| *x).reduce(f64::min),
        us.iter().map(|(_, x)| *x).reduce(f64::max),
    ) {
        let _ = write!(
            text,
            " Per forwarded packet it spent {lo:.1}-{hi:.1} µs of CPU across the loads"
        );
        let rated = m.get("sfu_rated_load").and_then(Value::as_str);
        if let (Some(rated), Some(pps)) = (rated, num(m, "sfu_forwarded_packets_per_cpu_second")) {
            let _ = write!(
                text,
                " ({pps:.0} packets per CPU-second at the rated load, {rated}: the goal of \
                 100,000 {})",
                if pps >= 100_000.0 { "met" } else { "missed" }
            );
        }
        let system = per_load("system_share");
        if let (Some(lo), Some(hi)) = (
            system.iter().map(|(_, x)| *x).reduce(f64::min),
            system.iter().map(|(_, x)| *x).reduce(f64::max),
        ) {
            let _ = write!(
                text,
                ", {:.0}-{:.0}% of it in the kernel (receiving and sending datagrams; on the \
                 loopback interface that includes delivering each datagram into its receiver's \
                 socket, which on a network the receiver's machine does)",
                lo * 100.0,
                hi * 100.0
            );
        }
        text.push('.');
    }
    if let Some(ratio) = num(m, "sfu_cpu_per_packet_ratio_16_vs_4") {
        let _ = write!(
            text,
            " In rooms of 16 a packet costs {ratio:.2}× what it costs in rooms of 4: the cost per \
             packet {} as rooms grow (each peer connection's own timers, RTCP and keepalives are \
             spread over more packets in a bigger room).",
            if ratio < 1.0 { "falls" } else { "rises" }
        );
    }
    let cpus = num(m, "machine_cpus").unwrap_or(0.0);
    let generator = per_load("generator_cpu_share");
    let delivery = per_load("audio_delivery");
    let sfu_share = per_load("cpu_share");
    let saturated = |l: &str| -> Option<bool> {
        let g = generator.iter().find(|(x, _)| x == l)?.1;
        let s = sfu_share.iter().find(|(x, _)| x == l).map_or(0.0, |x| x.1);
        Some(cpus > 0.0 && g + s >= 0.85 * cpus)
    };
    let latency = |l: &str| -> Option<(f64, f64)> {
        Some((
            n(format!("sfu_latency_p50_ms_{l}"))?,
            n(format!("sfu_latency_p99_ms_{l}"))?,
        ))
    };
    for (l, g) in &generator {
        let (Some(busy), Some((p50, p99))) = (saturated(l), latency(l)) else {
            continue;
        };
        let delivered = delivery.iter().find(|(x, _)| x == l).map(|x| x.1);
        let _ = write!(
            text,
            " At {l} the load generator (the participants' str0m connections, in the benchmark \
             process) used {g:.2} of the machine's {cpus:.0} cores{}{}, and the one-way audio time \
             was p50 {p50:.1} / p99 {p99:.1} ms{}.",
            if busy {
                ", which with the SFU's share is the machine saturated"
            } else {
                ""
            },
            delivered.map_or(String::new(), |d| format!(
                " ({:.0}% of the audio sent arrived within the window)",
                d * 100.0
            )),
            if busy {
                ": it includes the SFU waiting for a core"
            } else {
                ""
            }
        );
    }
    if let (Some(p50), Some(p99)) = (
        num(m, "sfu_added_latency_p50_ms"),
        num(m, "sfu_added_latency_p99_ms"),
    ) {
        let met = p50 <= 1.0 && p99 <= 5.0;
        let _ = write!(
            text,
            " The latency goal (p50 ≤ 1 ms, p99 ≤ 5 ms at the rated load) is {} as measured \
             (p50 {p50:.1} / p99 {p99:.1} ms){}.",
            if met { "met" } else { "missed" },
            match (
                m.get("sfu_latency_probe_load").and_then(Value::as_str),
                num(m, "sfu_unloaded_latency_p50_ms"),
                num(m, "sfu_unloaded_latency_p99_ms"),
            ) {
                (Some(probe), Some(a), Some(b)) => format!(
                    "; with the generator unsaturated ({probe}) the same measurement is p50 \
                     {a:.1} / p99 {b:.1} ms, which {} that goal",
                    if a <= 1.0 && b <= 5.0 {
                        "meets"
                    } else {
                        "still misses"
                    }
                ),
                _ => String::new(),
            }
        );
    }
    text.push('\n');
    text
}
