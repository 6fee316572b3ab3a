//! The backend on a Redis Cluster: entries spread over every primary and the namespace-wide
//! operations walk them all (never `KEYS`); single flight across processes with keys on every
//! primary; a primary killed and its replica promoted; slots resharded while calls run.
//!
//! The shared cluster is `CACHIER_TEST_REDIS_CLUSTER_URL` (scripts/test.sh starts it); the
//! failover and resharding cases start a private six-node cluster on free loopback ports.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachier_backend_redis::RedisBackend;
use cachier_core::{memoize, Backend, Key, Memoized, Namespace};
use cachier_testkit::private_redis::PrivateRedisCluster;
use cachier_testkit::{service_url, unique_name};
use parking_lot::Mutex;

fn shared_url(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_REDIS_CLUSTER_URL", test)
}

/// The seed ports of a `redis+cluster://127.0.0.1:p1,.../` URL.
fn seed_ports(url: &str) -> Vec<u16> {
    let hosts = url
        .split_once("://")
        .expect("scheme")
        .1
        .trim_end_matches('/');
    hosts
        .split(',')
        .map(|h| h.rsplit_once(':').expect("port").1.parse().expect("port"))
        .collect()
}

fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect to a cluster node")
}

/// The slot ranges of the cluster (start, end, primary port), from a reachable seed.
fn slot_map(url: &str) -> Vec<(u16, u16, u16)> {
    try_slot_map(url).expect("CLUSTER SLOTS from a reachable seed")
}

/// A connection to the first seed that answers.
fn any_seed(url: &str) -> Option<redis::Connection> {
    seed_ports(url).into_iter().find_map(|p| {
        redis::Client::open(format!("redis://127.0.0.1:{p}/"))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    })
}

fn try_slot_map(url: &str) -> Option<Vec<(u16, u16, u16)>> {
    let mut con = any_seed(url)?;
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).ok()?;
    ranges
        .into_iter()
        .map(|range| {
            let redis::Value::Array(parts) = range else {
                return None;
            };
            let redis::Value::Array(primary) = parts.get(2)? else {
                return None;
            };
            Some((
                redis::from_redis_value(parts[0].clone()).ok()?,
                redis::from_redis_value(parts[1].clone()).ok()?,
                redis::from_redis_value(primary.get(1)?.clone()).ok()?,
            ))
        })
        .collect()
}

fn primaries(url: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = slot_map(url).into_iter().map(|(_, _, p)| p).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The port of the primary serving `redis_key` now.
fn primary_of(url: &str, redis_key: &str) -> u16 {
    try_primary_of(url, redis_key).expect("the key's slot is served")
}

fn try_primary_of(url: &str, redis_key: &str) -> Option<u16> {
    let map = try_slot_map(url)?;
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(redis_key)
        .query(&mut any_seed(url)?)
        .ok()?;
    map.iter()
        .find(|(start, end, _)| (*start..=*end).contains(&slot))
        .map(|(_, _, port)| *port)
}

/// Keys on one node matching `pattern`, by `SCAN`.
fn keys_on(port: u16, pattern: &str) -> usize {
    let mut con = node(port);
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .expect("SCAN");
        n += keys.len();
        cursor = next;
        if cursor == 0 {
            return n;
        }
    }
}

/// Calls of `KEYS` on one node so far.
fn keys_calls(port: u16) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node(port))
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_keys:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Entries spread evenly over the three primaries, and every management call walks them all:
/// `len`, `entries`, `namespaces`, `clear_being_calculated`, `delete_stale_entries` and
/// `clear_cache`, never with `KEYS`, never touching another function's entries (not even one
/// whose name extends this one's).
#[test]
fn entries_spread_over_every_primary_and_management_walks_them_all() {
    let Some(url) = shared_url("entries_spread_over_every_primary") else {
        return;
    };
    let backend = RedisBackend::builder(&url)
        .prefix("cachier-cluster-test")
        .build()
        .unwrap();
    let ns = Namespace::new(&unique_name("spread"), None).unwrap();
    let sibling = Namespace::new(&format!("{}:x", ns.as_str()), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let other = backend.core(&sibling).unwrap();
    let nodes = primaries(&url);
    assert_eq!(nodes.len(), 3, "three primaries");
    let keys_before: Vec<u64> = nodes.iter().map(|&p| keys_calls(p)).collect();

    const N: u64 = 3000;
    for i in 0..N {
        core.put(&Key::of(&i).unwrap(), b"v", None).unwrap();
    }
    other.put(&Key::of(&0u64).unwrap(), b"kept", None).unwrap();
    let pattern = format!("cachier-cluster-test:{}:{}", ns.as_str(), "?".repeat(64));
    let per_node: Vec<usize> = nodes.iter().map(|&p| keys_on(p, &pattern)).collect();
    eprintln!("{N} entries per primary: {per_node:?}");
    assert_eq!(per_node.iter().sum::<usize>() as u64, N);
    for n in &per_node {
        assert!(
            (*n as u64) * 100 < N * 40,
            "no primary holds 40 %: {per_node:?}"
        );
    }

    assert_eq!(core.len().unwrap(), N);
    assert_eq!(core.entries().unwrap().len() as u64, N);
    let listed = backend.namespaces().unwrap();
    assert!(listed.contains(&ns) && listed.contains(&sibling));

    // Claims on every primary, dropped by one call.
    let claimed: Vec<Key> = (0..30u64).map(|i| Key::of(&i).unwrap()).collect();
    for key in &claimed {
        assert!(matches!(
            core.claim(key, Duration::from_secs(60)).unwrap(),
            cachier_core::Claim::Claimed(_)
        ));
    }
    core.clear_being_calculated().unwrap();
    for key in &claimed {
        let entry = core.get(key).unwrap().expect("the value stays");
        assert!(!entry.being_calculated() && entry.is_completed());
    }

    // Stale entries everywhere: all deleted, and counted once each.
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        core.delete_stale_entries(Duration::from_millis(1)).unwrap(),
        N
    );
    assert_eq!(core.len().unwrap(), 0);

    for i in 0..N {
        core.put(&Key::of(&i).unwrap(), b"v", None).unwrap();
    }
    core.clear_cache().unwrap();
    assert_eq!(core.len().unwrap(), 0);
    for &p in &nodes {
        assert_eq!(keys_on(p, &pattern), 0);
    }
    let kept = other.get(&Key::of(&0u64).unwrap()).unwrap().expect("kept");
    assert_eq!(kept.value.as_deref(), Some(&b"kept"[..]));
    other.clear_cache().unwrap();
    let keys_after: Vec<u64> = nodes.iter().map(|&p| keys_calls(p)).collect();
    assert_eq!(keys_before, keys_after, "KEYS was never sent");
}

const CHILD_ENV: &str = "CACHIER_CLUSTER_TEST_CHILD";
const PROCESSES: usize = 8;
const THREADS: usize = 4;

/// A slow `x * 3` that counts its computations in the cluster itself (`INCR`), so processes
/// add to one count.
fn counted(backend: &RedisBackend, name: &str) -> Memoized<u64, u64> {
    let client = backend.cluster_client().expect("a cluster").clone();
    let name = name.to_owned();
    memoize(&name.clone(), move |x: u64| {
        let mut con = client.get_connection().expect("count connection");
        redis::cmd("INCR")
            .arg(format!("cachier-cluster-test-count:{name}:{x}"))
            .exec(&mut con)
            .expect("INCR");
        thread::sleep(Duration::from_millis(300));
        x * 3
    })
    .backend(backend.clone())
    .build()
    .expect("build")
}

/// 8 processes × 4 threads call the same arguments at the same instant, their keys on every
/// primary: each argument is computed once.
#[test]
fn processes_compute_once_with_keys_on_every_primary() {
    let Some(url) = shared_url("processes_compute_once_with_keys_on_every_primary") else {
        return;
    };
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&url, &spec);
    }
    let backend = RedisBackend::from_url(&url).unwrap();
    let name = unique_name("cluster_processes");
    let ns = Namespace::new(&name, None).unwrap();
    // Arguments until every primary holds two of their keys.
    let mut per_primary: BTreeMap<u16, Vec<u64>> = primaries(&url)
        .into_iter()
        .map(|p| (p, Vec::new()))
        .collect();
    let mut x = 0u64;
    while per_primary.values().any(|args| args.len() < 2) {
        let port = primary_of(&url, &backend.redis_key(&ns, &Key::of(&x).unwrap()));
        let args = per_primary.get_mut(&port).expect("a primary");
        if args.len() < 2 {
            args.push(x);
        }
        x += 1;
    }
    let args: Vec<u64> = per_primary.values().flatten().copied().collect();
    let start_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3);
    let spec = format!(
        "{name};{};{}",
        start_at.as_millis(),
        args.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "processes_compute_once_with_keys_on_every_primary",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &spec)
                .stdout(Stdio::null())
                .spawn()
                .expect("start a child")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    let client = backend.cluster_client().unwrap();
    let mut con = client.get_connection().unwrap();
    for x in &args {
        let count: Option<u64> = redis::cmd("GET")
            .arg(format!("cachier-cluster-test-count:{name}:{x}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(count, Some(1), "argument {x} computed once");
        let exists: bool = redis::cmd("EXISTS")
            .arg(backend.redis_key(&ns, &Key::of(x).unwrap()))
            .query(&mut con)
            .unwrap();
        assert!(exists, "the entry of {x} is where the layout says");
    }
    eprintln!(
        "{PROCESSES} processes × {THREADS} threads, arguments per primary: {per_primary:?}: one computation each"
    );
    backend.core(&ns).unwrap().clear_cache().unwrap();
}

fn child(url: &str, spec: &str) {
    let mut parts = spec.split(';');
    let name = parts.next().unwrap().to_owned();
    let start_at: u128 = parts.next().unwrap().parse().unwrap();
    let args: Vec<u64> = parts
        .next()
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    let backend = RedisBackend::from_url(url).unwrap();
    let f = Arc::new(counted(&backend, &name));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let f = f.clone();
            let args = args.clone();
            thread::spawn(move || {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                if start_at > now {
                    thread::sleep(Duration::from_millis((start_at - now) as u64));
                }
                for i in 0..args.len() {
                    let x = args[(i + t) % args.len()];
                    assert_eq!(f.call(x), x * 3);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a child thread");
    }
}

/// Computations per argument, shared by every handle of one test process.
#[derive(Clone, Default)]
struct Computations(Arc<Mutex<HashMap<u64, usize>>>);

impl Computations {
    fn total(&self) -> usize {
        self.0.lock().values().sum()
    }
    fn of(&self, x: u64) -> usize {
        self.0.lock().get(&x).copied().unwrap_or(0)
    }
}

/// `x * 7`, slow enough for callers to meet, on a backend of its own (so the handles share
/// nothing in the process: only the cluster's claims keep them to one computation).
fn handle(url: &str, name: &str, computations: &Computations) -> Arc<Memoized<u64, u64>> {
    let backend = RedisBackend::builder(url).build().unwrap();
    let computations = computations.clone();
    Arc::new(
        memoize(name, move |x: u64| {
            *computations.0.lock().entry(x).or_default() += 1;
            thread::sleep(Duration::from_millis(150));
            x * 7
        })
        .backend(backend)
        .build()
        .unwrap(),
    )
}

/// Calls every argument from 4 handles × 4 threads at once; panics on a wrong value.
fn stampede(handles: &[Arc<Memoized<u64, u64>>], args: &[u64]) {
    let threads: Vec<_> = handles
        .iter()
        .flat_map(|f| (0..4).map(move |t| (f.clone(), t)))
        .map(|(f, t)| {
            let args = args.to_vec();
            thread::spawn(move || {
                for i in 0..args.len() {
                    let x = args[(i + t) % args.len()];
                    assert_eq!(f.call(x), x * 7);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no wrong value");
    }
}

/// A thread calling `args` in a loop until stopped, checking every value; returns how many
/// calls it made.
fn keep_calling(
    f: Arc<Memoized<u64, u64>>,
    args: Vec<u64>,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for &x in &args {
                assert_eq!(f.call(x), x * 7, "a wrong value");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// A primary is killed mid-run: calls keep returning correct values (uncached while its slots
/// have no primary), its replica is promoted and caching resumes without a restart, single
/// flight holds on the promoted primary, and the old primary rejoins as a replica.
#[test]
fn failover_keeps_values_and_single_flight() {
    if !PrivateRedisCluster::available("failover_keeps_values_and_single_flight") {
        return;
    }
    let mut cluster = PrivateRedisCluster::start("failover");
    let url = cluster.url();
    let name = unique_name("failover");
    let ns = Namespace::new(&name, None).unwrap();
    let computations = Computations::default();
    let handles: Vec<_> = (0..4).map(|_| handle(&url, &name, &computations)).collect();
    let layout = RedisBackend::from_url(&url).unwrap();
    let args: Vec<u64> = (0..30).collect();
    stampede(&handles, &args);
    assert_eq!(computations.total(), args.len(), "one computation each");

    let victim = primary_of(&url, &layout.redis_key(&ns, &Key::of(&0u64).unwrap()));
    let victim_args: Vec<u64> = args
        .iter()
        .copied()
        .filter(|x| primary_of(&url, &layout.redis_key(&ns, &Key::of(x).unwrap())) == victim)
        .collect();
    // Let the replicas acknowledge every write before the kill.
    let mut con = node(victim);
    let _: i64 = redis::cmd("WAIT").arg(1).arg(2000).query(&mut con).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = handles
        .iter()
        .map(|f| keep_calling(f.clone(), args.clone(), stop.clone(), calls.clone()))
        .collect();
    thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    cluster.kill(victim);
    // The replica takes over: the victim's slots are served by another node.
    let promoted = loop {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no promotion within 30 s"
        );
        match try_primary_of(&url, &layout.redis_key(&ns, &Key::of(&0u64).unwrap())) {
            Some(port) if port != victim => break port,
            _ => {}
        }
        thread::sleep(Duration::from_millis(100));
    };
    cluster.wait_ok(Duration::from_secs(30));
    let promoted_in = killed_at.elapsed();
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().expect("calls kept returning correct values");
    }
    let during = computations.total() - args.len();
    eprintln!(
        "failover: primary {victim} killed, replica {promoted} promoted in {promoted_in:?}; {} calls during the run, all correct; {during} computations beyond the first ({} arguments were on the killed primary)",
        calls.load(Ordering::Relaxed),
        victim_args.len()
    );

    // Caching resumed, without a restart: one round may recompute what the replica missed,
    // the next is all hits.
    stampede(&handles, &args);
    let settled = computations.total();
    stampede(&handles, &args);
    assert_eq!(
        computations.total(),
        settled,
        "hits resume after the failover"
    );

    // Single flight on the promoted primary: fresh arguments whose keys it serves.
    let fresh: Vec<u64> = (1000..)
        .filter(|x| primary_of(&url, &layout.redis_key(&ns, &Key::of(x).unwrap())) == promoted)
        .take(3)
        .collect();
    stampede(&handles, &fresh);
    for x in &fresh {
        assert_eq!(
            computations.of(*x),
            1,
            "{x} computed once after the failover"
        );
    }

    // The old primary comes back, as a replica; nothing is lost or recomputed.
    cluster.restart(victim);
    cluster.wait_ok(Duration::from_secs(30));
    let before = computations.total();
    stampede(&handles, &args);
    assert_eq!(
        computations.total(),
        before,
        "hits after the old primary rejoined"
    );
    assert_ne!(
        primary_of(&url, &layout.redis_key(&ns, &Key::of(&0u64).unwrap())),
        victim,
        "the old primary rejoined as a replica"
    );
}

/// Slots holding cached entries move to another primary (`redis-cli --cluster reshard`) while
/// calls run: no wrong value, and the moved entries are hits afterwards.
#[test]
fn resharding_keeps_values_and_hits_resume() {
    if !PrivateRedisCluster::available("resharding_keeps_values_and_hits_resume") {
        return;
    }
    let cluster = PrivateRedisCluster::start("reshard");
    let url = cluster.url();
    let name = unique_name("reshard");
    let ns = Namespace::new(&name, None).unwrap();
    let computations = Computations::default();
    let handles: Vec<_> = (0..4).map(|_| handle(&url, &name, &computations)).collect();
    let layout = RedisBackend::from_url(&url).unwrap();
    let args: Vec<u64> = (0..60).collect();
    stampede(&handles, &args);
    assert_eq!(computations.total(), args.len());

    let source = primary_of(&url, &layout.redis_key(&ns, &Key::of(&0u64).unwrap()));
    let target = *primaries(&url)
        .iter()
        .find(|&&p| p != source)
        .expect("another primary");
    let moving: Vec<u64> = args
        .iter()
        .copied()
        .filter(|x| primary_of(&url, &layout.redis_key(&ns, &Key::of(x).unwrap())) == source)
        .collect();
    let source_slots: u32 = slot_map(&url)
        .iter()
        .filter(|(_, _, p)| *p == source)
        .map(|(start, end, _)| u32::from(end - start) + 1)
        .sum();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = handles
        .iter()
        .map(|f| keep_calling(f.clone(), args.clone(), stop.clone(), calls.clone()))
        .collect();
    let started = Instant::now();
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{source}")])
        .args(["--cluster-from", &cluster.node_id(source)])
        .args(["--cluster-to", &cluster.node_id(target)])
        .args(["--cluster-slots", &source_slots.to_string()])
        .arg("--cluster-yes")
        .output()
        .expect("redis-cli --cluster reshard");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "reshard failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.join().expect("no wrong value during the resharding");
    }
    for x in &moving {
        assert_eq!(
            primary_of(&url, &layout.redis_key(&ns, &Key::of(x).unwrap())),
            target,
            "{x}'s slot moved"
        );
    }
    let extra = computations.total() - args.len();
    eprintln!(
        "resharding: {source_slots} slots ({} cached entries) moved {source} -> {target} in {took:?} under {} calls, all correct; {extra} computations beyond the first",
        moving.len(),
        calls.load(Ordering::Relaxed)
    );
    let before = computations.total();
    stampede(&handles, &args);
    assert_eq!(computations.total(), before, "the moved entries are hits");
}
