//! The SFU under load: rooms of `switchboard-sfu` processes started by the local stack's ECS
//! endpoint (createRoom), each joined through the stack's signaling by str0m participants
//! (`switchboard_sfu::testing`: a producer connection with synthetic Opus at 50 packets/s and
//! VP8 at 25 frames/s, one consumer connection per other participant, each on its own UDP
//! socket). What is measured is the SFU processes' own CPU time (utime + stime from
//! `/proc/<pid>/stat`) and memory (VmRSS), so the load generator sharing the machine's cores does
//! not count; packets are counted where they arrive, on the participants' consumer sockets.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::Clock;
use switchboard_local::{Stack, StackOptions};
use switchboard_sfu::testing::{Participant, Publish, Stats};

use crate::common::{Env, Error, OPERATOR_KEY, now, quantile};

/// One load point: `rooms` rooms of `size` participants, measured for `seconds`.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub size: usize,
    pub rooms: usize,
    pub seconds: f64,
    /// RTP packets the participants received on their consumer connections in the window.
    pub forwarded_packets: u64,
    /// utime + stime of every SFU process over the window.
    pub sfu_cpu_seconds: f64,
    /// The stime part of it (in the kernel: system calls, the UDP stack).
    pub sfu_system_seconds: f64,
    /// utime + stime of the benchmark process over the window: the participants (and the
    /// local stack's gateway), the load generator.
    pub generator_cpu_seconds: f64,
    /// Audio packets the participants received in the window, per audio packet they sent times
    /// the receivers each has (1.0: everything sent arrived).
    pub audio_delivery: f64,
    /// VmRSS of every SFU process at the end of the window, MB.
    pub sfu_rss_mb: f64,
    /// One SFU process before anyone joined, MB.
    pub idle_rss_mb: f64,
    /// Forwarded tracks: rooms × size × (size − 1) × 2 (audio and video).
    pub streams: usize,
    /// (receiver, sender) pairs of a room with no packet in the window (should be none).
    pub silent_pairs: usize,
    /// Participants that received their own media (should be none).
    pub self_received: usize,
    /// Audio packets' one-way time through the SFU within the window, ms.
    pub latency_ms: Vec<f64>,
    /// Video frames the participants received in the window.
    pub video_frames: u64,
}

impl Load {
    pub fn packets_per_cpu_second(&self) -> f64 {
        self.forwarded_packets as f64 / self.sfu_cpu_seconds
    }

    pub fn cpu_us_per_packet(&self) -> f64 {
        self.sfu_cpu_seconds * 1e6 / self.forwarded_packets as f64
    }

    pub fn p(&self, q: f64) -> f64 {
        quantile(&self.latency_ms, q)
    }
}

/// (utime, stime) of process `pid`, seconds (fields 14 and 15 of /proc/<pid>/stat).
fn cpu_seconds(pid: u32) -> Result<(f64, f64), Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("no ) in /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Error> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/pid/stat")?
            .parse::<f64>()?)
    };
    // After ')': field 3 is index 0, so utime (14) is index 11 and stime (15) index 12.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? / hz, ticks(12)? / hz))
}

fn rss_mb(pid: u32) -> Result<f64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or("no VmRSS")?
        .parse::<f64>()?;
    Ok(kb / 1024.0)
}

fn free_udp_port() -> Result<u16, Error> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A stack whose ECS tasks run `sfu` (with its UDP port and quiet logs).
async fn sfu_stack(env: &Env, sfu: &Path) -> Result<Stack, Error> {
    let mut options = StackOptions::new(env.proxy.url.clone());
    options.table_prefix = format!("b{}-", uuid::Uuid::new_v4().simple());
    options.clock = Clock::manual(now());
    options.pages = None;
    // The SFUs log warnings and errors to this process's stderr (SWITCHBOARD_BENCH_SFU_LOG
    // gives them another RUST_LOG filter, e.g. `info` to see each peer connection).
    let log = std::env::var("SWITCHBOARD_BENCH_SFU_LOG").unwrap_or_else(|_| "warn".into());
    if !log
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_=,:".contains(c))
    {
        return Err(format!("SWITCHBOARD_BENCH_SFU_LOG={log:?} is not a RUST_LOG filter").into());
    }
    options.sfu_command = Some(format!(
        "exec env RUST_LOG={log} SFU_UDP_PORT={} '{}'",
        free_udp_port()?,
        sfu.display()
    ));
    options.task_stop_timeout = Duration::from_secs(5);
    for (name, value) in [
        ("SWITCHBOARD_OPERATOR_KEYS", OPERATOR_KEY),
        ("SWITCHBOARD_TURN_SECRET", "bench-turn-secret"),
        ("SWITCHBOARD_TURN_URLS", "turn:127.0.0.1:3478?transport=udp"),
    ] {
        options.vars.insert(name.to_string(), value.to_string());
    }
    Ok(Stack::start(options).await?)
}

/// createRoom, then waits for its SFU to identify; returns the room id and the SFU's pid.
async fn room(env: &Env, stack: &Stack) -> Result<(String, u32), Error> {
    let reply = env
        .http
        .put(format!("{}/createRoom", stack.http_url))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({}))
        .send()
        .await?;
    let status = reply.status().as_u16();
    let body: serde_json::Value = reply.json().await?;
    if status != 200 {
        return Err(format!("createRoom answered {status}: {body}").into());
    }
    let id = body["roomId"]
        .as_str()
        .ok_or("createRoom: no roomId")?
        .to_string();
    let arn = body["taskArn"]
        .as_str()
        .ok_or("createRoom: no taskArn")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if stack
            .deps
            .store
            .room(&id)
            .await?
            .is_some_and(|r| r.serving_connection.is_some())
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the SFU of room {id} did not identify within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = stack
        .tasks()
        .into_iter()
        .find(|t| t.task_arn == arn)
        .and_then(|t| t.pid)
        .ok_or("the SFU task has no process")?;
    Ok((id, pid))
}

/// Packets, video frames, latency samples (one per audio frame) so far, per (receiver, sender).
fn totals(participants: &[(usize, Participant)]) -> HashMap<(String, String), (u64, u64, usize)> {
    let mut out = HashMap::new();
    for (_, p) in participants {
        let stats: Stats = p.stats();
        for (from, r) in stats.received {
            out.insert(
                (p.id.clone(), from),
                (r.rtp_packets, r.video_frames, r.audio_latency_us.len()),
            );
        }
    }
    out
}

/// Runs one load point against fresh SFU processes.
pub async fn load(
    env: &Env,
    sfu: &Path,
    size: usize,
    rooms: usize,
    measure: Duration,
    frame_bytes: usize,
) -> Result<Load, Error> {
    let stack = sfu_stack(env, sfu).await?;
    let mut room_ids = vec![];
    let mut pids = vec![];
    for _ in 0..rooms {
        let (id, pid) = room(env, &stack).await?;
        room_ids.push(id);
        pids.push(pid);
    }
    let idle_rss_mb = rss_mb(pids[0])?;
    // The generator shares the cores with the SFU: its threads yield them (niceness 10), as if
    // it ran on machines of its own. The SFU's CPU time is counted apart either way.
    let publish = Publish {
        video_frame_bytes: frame_bytes,
        nice: 10,
        ..Publish::default()
    };
    // One after another, each once its producer connection is up: on a busy machine, a room's
    // worth of DTLS handshakes at once can outlast their timeout.
    let mut participants = vec![];
    for (r, id) in room_ids.iter().enumerate() {
        for i in 0..size {
            let name = format!("r{r}-p{i}");
            let p = Participant::join(&stack.ws_url, id, &name, publish.clone()).await?;
            p.wait_for(Duration::from_secs(30), |s| s.producer_connected)
                .await
                .map_err(|_| format!("{name}'s producer connection did not connect in 30 s"))?;
            participants.push((r, p));
        }
    }
    // Everyone decodes everyone else's video before the window opens.
    let names: Vec<(usize, String)> = participants
        .iter()
        .map(|(r, p)| (*r, p.id.clone()))
        .collect();
    let others = |r: usize, me: &str| -> Vec<String> {
        names
            .iter()
            .filter(|(rr, n)| *rr == r && n != me)
            .map(|(_, n)| n.clone())
            .collect()
    };
    let limit = Duration::from_secs(30 + 2 * (size * rooms) as u64);
    for (r, p) in &participants {
        let want = others(*r, &p.id);
        p.wait_for(limit, |s| {
            want.iter().all(|o| {
                s.received
                    .get(o)
                    .is_some_and(|x| x.video_frames > 0 && x.audio_frames > 0)
            })
        })
        .await
        .map_err(|s| {
            let got: Vec<_> = s
                .received
                .iter()
                .map(|(k, v)| format!("{k}: {} video, {} audio", v.video_frames, v.audio_frames))
                .collect();
            format!(
                "{} does not receive everyone in its room within {limit:?}: {got:?}",
                p.id
            )
        })?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let sfu_cpu = |pids: &[u32]| -> Result<(f64, f64), Error> {
        pids.iter().try_fold((0.0, 0.0), |(u, s), p| {
            let (pu, ps) = cpu_seconds(*p)?;
            Ok((u + pu, s + ps))
        })
    };
    let audio_sent = |participants: &[(usize, Participant)]| -> u64 {
        participants
            .iter()
            .map(|(_, p)| p.stats().audio_frames_sent)
            .sum()
    };
    let me = std::process::id();
    let cpu0 = sfu_cpu(&pids)?;
    let generator0 = cpu_seconds(me)?;
    let sent0 = audio_sent(&participants);
    let before = totals(&participants);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    let after = totals(&participants);
    let sent1 = audio_sent(&participants);
    let generator1 = cpu_seconds(me)?;
    let cpu1 = sfu_cpu(&pids)?;
    let seconds = started.elapsed().as_secs_f64();
    let sfu_rss_mb = pids
        .iter()
        .map(|p| rss_mb(*p))
        .sum::<Result<f64, Error>>()?;

    let mut load = Load {
        size,
        rooms,
        seconds,
        sfu_cpu_seconds: (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1),
        sfu_system_seconds: cpu1.1 - cpu0.1,
        generator_cpu_seconds: (generator1.0 + generator1.1) - (generator0.0 + generator0.1),
        sfu_rss_mb,
        idle_rss_mb,
        streams: rooms * size * (size - 1) * 2,
        ..Load::default()
    };
    let mut audio_received = 0u64;
    for (r, p) in &participants {
        let stats = p.stats();
        if stats.received.contains_key(&p.id) {
            load.self_received += 1;
        }
        for o in others(*r, &p.id) {
            let key = (p.id.clone(), o.clone());
            let (pk0, vf0, l0) = before.get(&key).copied().unwrap_or_default();
            let (pk1, vf1, _) = after.get(&key).copied().unwrap_or_default();
            if pk1 <= pk0 {
                load.silent_pairs += 1;
            }
            load.forwarded_packets += pk1.saturating_sub(pk0);
            load.video_frames += vf1.saturating_sub(vf0);
            if let Some(received) = stats.received.get(&o) {
                let l1 = after.get(&key).map_or(0, |t| t.2);
                audio_received += l1.saturating_sub(l0) as u64;
                load.latency_ms.extend(
                    received
                        .audio_latency_us
                        .iter()
                        .skip(l0)
                        .take(l1.saturating_sub(l0))
                        .map(|us| *us as f64 / 1000.0),
                );
            }
        }
    }
    load.audio_delivery =
        audio_received as f64 / (sent1.saturating_sub(sent0) as f64 * (size - 1) as f64);
    for (_, p) in participants {
        p.leave().await;
    }
    for id in &room_ids {
        let _ = env
            .http
            .delete(format!("{}/rooms/{id}", stack.http_url))
            .bearer_auth(OPERATOR_KEY)
            .send()
            .await;
    }
    drop(stack);
    Ok(load)
}
