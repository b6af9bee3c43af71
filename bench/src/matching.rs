//! Match and claim cost against pools of growing size, the Arbiter-style Scan baseline, and
//! contention: many allocators at once, many claims of one path at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::common::{
    Bench, Env, Error, HOST_KEY, Item, OPERATOR_KEY, median, millis, n, quantile, s,
};
use crate::proxy::Counts;

const REGION: &str = "local";

/// A request's status and the roomId it was given, if any.
type Answer = (u16, Option<String>);

/// One pool size's figures.
#[derive(Clone, Debug, Default)]
pub struct PoolPoint {
    pub pool: usize,
    /// Median DynamoDB requests per successful operation.
    pub calls: f64,
    /// Median items examined (ScannedCount) per operation.
    pub items: f64,
    pub p50_ms: f64,
    pub samples: usize,
}

/// A host item exactly as `Store::heartbeat` writes it (checked against a real heartbeat).
fn host_item(i: usize, idle: bool, expires_at: i64) -> Item {
    let mut item: Item = [
        ("hostId", s(format!("bench-host-{i}"))),
        ("roomId", s(format!("bench-host-room-{i}"))),
        ("region", s(REGION)),
        ("status", s(if idle { "idle" } else { "busy" })),
        ("expiresAt", n(expires_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if idle {
        item.insert("idleRegion".into(), s(REGION));
    }
    item
}

/// A ready SFU room exactly as `attach_sfu` leaves one (checked against a real one).
fn ready_room_item(i: usize, now: i64) -> Item {
    let expires_at = now + switchboard::model::CONNECTION_TTL_SECONDS - (i % 600) as i64;
    [
        ("roomId", s(format!("bench-room-{i}"))),
        ("kind", s("sfu")),
        ("app", s(switchboard::model::SFU_APP)),
        ("state", s("ready")),
        ("pool", s("ready")),
        ("token", s(format!("token-{i}"))),
        ("servingPeer", s(format!("bench-room-{i}"))),
        ("servingConnection", s(format!("conn-{i}"))),
        ("identifiedAt", n(now)),
        ("deadline", n(expires_at)),
        ("expiresAt", n(expires_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn attribute_names(item: &Item) -> BTreeSet<String> {
    item.keys().cloned().collect()
}

async fn raw_item(env: &Env, table: &str, key: &str, value: &str) -> Result<Item, Error> {
    env.direct
        .get_item()
        .table_name(table)
        .key(key, s(value))
        .consistent_read(true)
        .send()
        .await?
        .item
        .ok_or_else(|| format!("no item {value} in {table}").into())
}

/// The loaders write what the production code writes: a real heartbeat's and a real ready
/// room's attributes are compared with the generated items'.
async fn check_shapes(env: &Env, b: &Bench) -> Result<(), Error> {
    let (status, body) = b
        .call(
            "POST",
            "/api/host/heartbeat",
            Some(json!({"hostId": "shape-host", "roomId": "shape-room", "region": REGION, "status": "idle"})),
            Some(HOST_KEY),
        )
        .await?;
    if status != 200 {
        return Err(format!("heartbeat: {status} {body}").into());
    }
    let real = raw_item(env, &b.tables().hosts, "hostId", "shape-host").await?;
    let ours = host_item(0, true, 0);
    if attribute_names(&real) != attribute_names(&ours) {
        return Err(format!(
            "host items differ from heartbeat's: {:?} vs {:?}",
            attribute_names(&real),
            attribute_names(&ours)
        )
        .into());
    }
    let (status, body) = b
        .call("PUT", "/createRoom", None, Some(OPERATOR_KEY))
        .await?;
    if status != 200 {
        return Err(format!("createRoom: {status} {body}").into());
    }
    let room_id = body["roomId"].as_str().unwrap_or_default().to_string();
    let token = b
        .stack
        .tasks()
        .into_iter()
        .find(|t| t.environment.get("ROOM_ID") == Some(&room_id))
        .and_then(|t| t.environment.get("SFU_TOKEN").cloned())
        .ok_or("no task for the shape room")?;
    b.stack
        .deps
        .store
        .attach_sfu(
            &room_id,
            switchboard::model::SfuProof::Token(&token),
            &room_id,
            "shape-conn",
        )
        .await?
        .ok_or("attach_sfu refused the shape room")?;
    let mut real = attribute_names(&raw_item(env, &b.tables().rooms, "roomId", &room_id).await?);
    real.remove("taskArn");
    let ours = attribute_names(&ready_room_item(0, 0));
    if real != ours {
        return Err(format!("room items differ from a ready room's: {real:?} vs {ours:?}").into());
    }
    // Out of the way: neither is part of a measured pool.
    env.direct
        .delete_item()
        .table_name(&b.tables().hosts)
        .key("hostId", s("shape-host"))
        .send()
        .await?;
    for room in [room_id.as_str(), "shape-room"] {
        env.direct
            .delete_item()
            .table_name(&b.tables().rooms)
            .key("roomId", s(room))
            .send()
            .await?;
    }
    Ok(())
}

pub struct PoolResults {
    pub find_match: Vec<PoolPoint>,
    pub claim: Vec<PoolPoint>,
    pub arbiter: Vec<PoolPoint>,
}

/// find-match, claimRoom and the Arbiter-style claim against each pool size. Pools grow in
/// one set of tables: each size adds hosts and rooms to the last.
pub async fn pools(
    env: &Env,
    sizes: &[usize],
    samples: usize,
    arbiter_samples: usize,
) -> Result<PoolResults, Error> {
    let b = env.stack(&[]).await?;
    check_shapes(env, &b).await?;
    let now = b.clock.now();
    let mut results = PoolResults {
        find_match: vec![],
        claim: vec![],
        arbiter: vec![],
    };
    let (mut idle, mut busy, mut rooms) = (0usize, 0usize, 0usize);
    for &pool in sizes {
        let started = Instant::now();
        // Idle hosts with liveness spread over the 30 s TTL, a quarter as many busy ones.
        let new_idle: Vec<Item> = (idle..pool)
            .map(|i| host_item(i, true, now + 10 + (i % 20) as i64))
            .collect();
        let busy_target = pool / 4;
        let new_busy: Vec<Item> = (busy..busy_target)
            .map(|i| host_item(1_000_000 + i, false, now + 30))
            .collect();
        env.load(&b.tables().hosts, new_idle).await?;
        env.load(&b.tables().hosts, new_busy).await?;
        let new_rooms: Vec<Item> = (rooms..pool).map(|i| ready_room_item(i, now)).collect();
        env.load(&b.tables().rooms, new_rooms).await?;
        (idle, busy, rooms) = (pool, busy_target, pool);
        eprintln!(
            "  pool {pool}: loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // The first size also warms DynamoDB Local's JVM and the stack up, unmeasured.
        let warmup = if pool == sizes[0] { 40 } else { 3 };
        results
            .find_match
            .push(find_match_point(env, &b, pool, samples, warmup).await?);
        results
            .claim
            .push(claim_point(env, &b, pool, samples, warmup).await?);
        results
            .arbiter
            .push(arbiter_point(env, &b, pool, arbiter_samples).await?);
    }
    Ok(results)
}

/// Each measured request's DynamoDB requests, items read and latency, at one pool size.
#[derive(Default)]
struct Samples {
    calls: Vec<f64>,
    items: Vec<f64>,
    latencies: Vec<f64>,
}

impl Samples {
    fn add(&mut self, cost: &Counts, elapsed: Duration) {
        self.calls.push(cost.calls() as f64);
        self.items.push(cost.scanned as f64);
        self.latencies.push(millis(elapsed));
    }

    fn point(&self, pool: usize) -> PoolPoint {
        PoolPoint {
            pool,
            calls: median(&self.calls),
            items: median(&self.items),
            p50_ms: median(&self.latencies),
            samples: self.calls.len(),
        }
    }
}

/// Runs `request`, with the DynamoDB requests it made (counted at the proxy) and its latency.
async fn measured<T>(
    b: &Bench,
    request: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<(T, Counts, Duration), Error> {
    let before = b.counts();
    let started = Instant::now();
    let answer = request.await?;
    let elapsed = started.elapsed();
    Ok((answer, b.counts().since(&before), elapsed))
}

async fn find_match_point(
    env: &Env,
    b: &Bench,
    pool: usize,
    samples: usize,
    warmup: usize,
) -> Result<PoolPoint, Error> {
    let mut taken = Samples::default();
    for k in 0..samples + warmup {
        let ((status, body), cost, elapsed) = measured(
            b,
            b.call(
                "POST",
                "/api/find-match",
                Some(json!({"region": REGION})),
                None,
            ),
        )
        .await?;
        if status != 200 {
            return Err(format!("find-match against {pool} idle hosts: {status} {body}").into());
        }
        if k >= warmup {
            taken.add(&cost, elapsed);
        }
        // Back to idle (uncounted): the pool keeps its size.
        let room = body["roomId"].as_str().unwrap_or_default();
        let host = room.replace("bench-host-room-", "bench-host-");
        env.direct
            .update_item()
            .table_name(&b.tables().hosts)
            .key("hostId", s(host))
            .update_expression("SET idleRegion = #region REMOVE reservedUntil")
            .expression_attribute_names("#region", "region")
            .send()
            .await?;
    }
    Ok(taken.point(pool))
}

async fn return_room(env: &Env, b: &Bench, room: &str, path: &str) -> Result<(), Error> {
    env.direct
        .update_item()
        .table_name(&b.tables().rooms)
        .key("roomId", s(room))
        .update_expression("SET #state = :ready, #pool = :ready REMOVE urlPath")
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#pool", "pool")
        .expression_attribute_values(":ready", s("ready"))
        .send()
        .await?;
    env.direct
        .delete_item()
        .table_name(&b.tables().paths)
        .key("urlPath", s(path))
        .send()
        .await?;
    Ok(())
}

async fn claim_point(
    env: &Env,
    b: &Bench,
    pool: usize,
    samples: usize,
    warmup: usize,
) -> Result<PoolPoint, Error> {
    let mut taken = Samples::default();
    for k in 0..samples + warmup {
        let path = format!("/bench-{pool}-{k}");
        let ((status, body), cost, elapsed) = measured(
            b,
            b.call("PATCH", "/claimRoom", Some(json!({"urlPath": path})), None),
        )
        .await?;
        if status != 200 {
            return Err(format!("claimRoom against {pool} ready rooms: {status} {body}").into());
        }
        if k >= warmup {
            taken.add(&cost, elapsed);
        }
        let room = body["roomId"].as_str().unwrap_or_default();
        return_room(env, b, room, &path).await?;
    }
    Ok(taken.point(pool))
}

/// The baseline the design avoids, written here: as Arbiter claims a room, a full table Scan
/// with a filter for unclaimed ready rooms, then a conditional update of the first one found
/// and the path's record. Its DynamoDB traffic goes through the same counting proxy.
async fn arbiter_claim(b: &Bench, path: &str) -> Result<String, Error> {
    let client = b.stack.deps.store.client();
    let tables = b.tables();
    let mut start = None;
    let mut found = None;
    loop {
        let out = client
            .scan()
            .table_name(&tables.rooms)
            .filter_expression("#state = :ready AND attribute_not_exists(urlPath)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":ready", s("ready"))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        if found.is_none() {
            found = out
                .items()
                .first()
                .and_then(|i| i.get("roomId"))
                .and_then(|v| v.as_s().ok())
                .cloned();
        }
        match out.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    let room = found.ok_or("the Scan found no ready room")?;
    client
        .update_item()
        .table_name(&tables.rooms)
        .key("roomId", s(&room))
        .update_expression("SET #state = :allocated, urlPath = :path REMOVE #pool")
        .condition_expression("#state = :ready")
        .expression_attribute_names("#state", "state")
        .expression_attribute_names("#pool", "pool")
        .expression_attribute_values(":allocated", s("allocated"))
        .expression_attribute_values(":ready", s("ready"))
        .expression_attribute_values(":path", s(path))
        .send()
        .await?;
    client
        .put_item()
        .table_name(&tables.paths)
        .item("urlPath", s(path))
        .item("roomId", s(&room))
        .send()
        .await?;
    Ok(room)
}

async fn arbiter_point(
    env: &Env,
    b: &Bench,
    pool: usize,
    samples: usize,
) -> Result<PoolPoint, Error> {
    let mut taken = Samples::default();
    for k in 0..samples + 1 {
        let path = format!("/arbiter-{pool}-{k}");
        let (room, cost, elapsed) = measured(b, arbiter_claim(b, &path)).await?;
        if k >= 1 {
            taken.add(&cost, elapsed);
        }
        return_room(env, b, &room, &path).await?;
    }
    Ok(taken.point(pool))
}

#[derive(Debug, Default)]
pub struct Contention {
    pub allocators: usize,
    pub hosts: usize,
    pub requests: usize,
    pub successes: usize,
    pub double_allocations: usize,
    /// Requests that got neither a host nor an honest 404.
    pub failures: usize,
    pub retries_per_success: f64,
    pub honest_404s_after: usize,
    pub seconds: f64,
    pub statuses: BTreeMap<u16, usize>,
}

/// `allocators` clients at once call find-match until as many requests as idle hosts have
/// been made. Every host stays idle until matched (the clock is frozen, so no lease lapses),
/// so every request should get a host: a 404 while a host is idle is a failure, as is any
/// other status. Then `allocators` more requests must all get an honest 404.
pub async fn contention(env: &Env, allocators: usize, hosts: usize) -> Result<Contention, Error> {
    let b = env.stack(&[]).await?;
    let now = b.clock.now();
    let idle: Vec<Item> = (0..hosts)
        .map(|i| host_item(i, true, now + 10 + (i % 20) as i64))
        .collect();
    env.load(&b.tables().hosts, idle).await?;
    let busy: Vec<Item> = (0..hosts / 4)
        .map(|i| host_item(1_000_000 + i, false, now + 30))
        .collect();
    env.load(&b.tables().hosts, busy).await?;
    let per_allocator = hosts.div_ceil(allocators);
    let before = b.counts();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let outcomes: Vec<Vec<Answer>> = futures_util::future::join_all((0..allocators).map(|a| {
        let b = &b;
        async move {
            let mut seen = vec![];
            let mine = per_allocator.min(hosts.saturating_sub(a * per_allocator));
            for _ in 0..mine {
                if Instant::now() > deadline {
                    break;
                }
                let outcome = b
                    .call(
                        "POST",
                        "/api/find-match",
                        Some(json!({"region": REGION})),
                        None,
                    )
                    .await;
                seen.push(match outcome {
                    Ok((status, body)) => (status, body["roomId"].as_str().map(String::from)),
                    Err(_) => (0, None),
                });
            }
            seen
        }
    }))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let cost = b.counts().since(&before);
    let outcomes: Vec<Answer> = outcomes.into_iter().flatten().collect();
    let mut statuses = BTreeMap::new();
    let mut rooms: HashMap<String, usize> = HashMap::new();
    for (status, room) in &outcomes {
        *statuses.entry(*status).or_insert(0) += 1;
        if let (200, Some(room)) = (status, room) {
            *rooms.entry(room.clone()).or_insert(0) += 1;
        }
    }
    let successes = statuses.get(&200).copied().unwrap_or_default();
    let double_allocations = rooms.values().map(|c| c - 1).sum();
    let requests = outcomes.len();
    // Honest 404s: with every host matched, each further request must be told so.
    let mut honest = 0;
    if successes == hosts {
        for _ in 0..allocators {
            let (status, _) = b
                .call(
                    "POST",
                    "/api/find-match",
                    Some(json!({"region": REGION})),
                    None,
                )
                .await?;
            honest += usize::from(status == 404);
        }
    }
    Ok(Contention {
        allocators,
        hosts,
        requests,
        successes,
        double_allocations,
        failures: requests - successes.min(requests),
        retries_per_success: cost.condition_failures as f64 / successes.max(1) as f64,
        honest_404s_after: honest,
        seconds,
        statuses,
    })
}

#[derive(Debug, Default)]
pub struct ClaimContention {
    pub paths: usize,
    pub per_path: usize,
    pub rooms: usize,
    pub requests: usize,
    pub successes: usize,
    pub double_rooms: usize,
    pub seconds: f64,
    pub statuses: BTreeMap<u16, usize>,
}

/// `per_path` concurrent claimRoom calls for each of `paths` paths (a few paths at a time),
/// against more ready rooms than paths: each path must get one room, and each room one path.
pub async fn claim_contention(
    env: &Env,
    paths: usize,
    per_path: usize,
) -> Result<ClaimContention, Error> {
    let b = env.stack(&[]).await?;
    let now = b.clock.now();
    let rooms = paths + paths / 2;
    env.load(
        &b.tables().rooms,
        (0..rooms).map(|i| ready_room_item(i, now)).collect(),
    )
    .await?;
    let started = Instant::now();
    let results: Vec<(usize, Vec<Answer>)> = futures_util::stream::iter(0..paths)
        .map(|p| {
            let b = &b;
            async move {
                let path = format!("/contended-{p}");
                let answers =
                    futures_util::future::join_all((0..per_path).map(|_| {
                        b.call("PATCH", "/claimRoom", Some(json!({"urlPath": path})), None)
                    }))
                    .await;
                let answers = answers
                    .into_iter()
                    .map(|r| match r {
                        Ok((status, body)) => (status, body["roomId"].as_str().map(String::from)),
                        Err(_) => (0, None),
                    })
                    .collect();
                (p, answers)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut statuses = BTreeMap::new();
    let mut paths_of_room: HashMap<String, BTreeSet<usize>> = HashMap::new();
    let mut double_rooms = 0;
    let mut successes = 0;
    for (p, answers) in &results {
        let mut rooms_of_path = BTreeSet::new();
        for (status, room) in answers {
            *statuses.entry(*status).or_insert(0) += 1;
            if let (200, Some(room)) = (status, room) {
                successes += 1;
                rooms_of_path.insert(room.clone());
                paths_of_room.entry(room.clone()).or_default().insert(*p);
            }
        }
        double_rooms += rooms_of_path.len().saturating_sub(1);
    }
    double_rooms += paths_of_room
        .values()
        .map(|p| p.len().saturating_sub(1))
        .sum::<usize>();
    Ok(ClaimContention {
        paths,
        per_path,
        rooms,
        requests: paths * per_path,
        successes,
        double_rooms,
        seconds,
        statuses,
    })
}

pub fn p99(values: &[f64]) -> f64 {
    quantile(values, 0.99)
}
