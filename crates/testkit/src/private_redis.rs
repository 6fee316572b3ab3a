//! A `redis-server` of one test alone, on a free loopback port, for fault tests (stop, hang,
//! restart) that must not disturb the shared server, and a private Redis Cluster of six of
//! them (failover, resharding). Used by the Redis conformance tests and by the Redis backend's
//! own tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ServerProcess;
use crate::{fresh_dir, services_required};

/// A private `redis-server`, killed when dropped.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: ServerProcess,
}

impl PrivateRedis {
    /// Whether `redis-server` can be run here: a failure naming it when services are
    /// required (`CI`, `CACHIER_REQUIRE_SERVICES`), else a loud SKIPPED line.
    pub fn available(test: &str) -> bool {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !services_required(),
                "{test}: `redis-server` is not installed (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED {test}: `redis-server` is not installed");
        }
        found
    }

    /// Starts a server with `extra` arguments and waits until it answers.
    pub fn start(label: &str, extra: &[&str]) -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = PrivateRedis {
            port,
            dir: fresh_dir(label),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: ServerProcess::default(),
        };
        server.resume();
        server
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn resume(&mut self) {
        assert!(!self.child.is_running(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child.started(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
            match pong {
                Ok(_) => return,
                // Answers with NOAUTH when a password is required: it is up.
                Err(e)
                    if e.to_string().contains("NOAUTH")
                        || e.to_string().contains("Authentication") =>
                {
                    return
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "redis-server on port {} did not start: {e}",
                        self.port
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Kills the server (`kill -9`) and reaps it.
    pub fn stop(&mut self) {
        self.child.stop();
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`...) to the running server.
    pub fn signal(&self, signal: libc::c_int) {
        self.child.signal(signal);
    }
}

/// A Redis Cluster of one test alone: three primaries and three replicas, six private
/// `redis-server` processes on free loopback ports (cluster bus on port + 10000), for the
/// failover and resharding tests. Killed when dropped.
pub struct PrivateRedisCluster {
    nodes: Vec<PrivateRedis>,
}

impl PrivateRedisCluster {
    /// Whether `redis-server` and `redis-cli` can be run here (see [`PrivateRedis::available`]).
    pub fn available(test: &str) -> bool {
        let cli = Command::new("redis-cli")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !cli {
            assert!(
                !services_required(),
                "{test}: `redis-cli` is not installed (scripts/test.sh installs it)"
            );
            eprintln!("SKIPPED {test}: `redis-cli` is not installed");
            return false;
        }
        PrivateRedis::available(test)
    }

    /// Starts six nodes, joins them with `redis-cli --cluster create --cluster-replicas 1`
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start(label: &str) -> PrivateRedisCluster {
        let mut nodes: Vec<PrivateRedis> = Vec::new();
        while nodes.len() < 6 {
            let port = free_port_with_bus();
            if nodes.iter().any(|n| n.port == port) {
                continue;
            }
            let dir = fresh_dir(&format!("{label}-{port}"));
            let mut node = PrivateRedis {
                port,
                dir,
                extra: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                child: ServerProcess::default(),
            };
            node.resume();
            nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = PrivateRedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(20));
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}/", seeds.join(","))
    }

    /// The ports of the six nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A plain connection to one node.
    pub fn connect(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
            .get_connection_with_timeout(Duration::from_secs(2))
    }

    /// The ports of the nodes that are running primaries serving slots now, by their own word.
    pub fn primaries(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_running()) {
            let Ok(mut con) = self.connect(node.port) else {
                continue;
            };
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut con)
                .unwrap_or_default();
            let me = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
            let fields: Vec<&str> = me.split_whitespace().collect();
            if fields.get(2).is_some_and(|f| f.contains("master")) && fields.len() > 8 {
                out.push(node.port);
            }
        }
        out
    }

    /// The port of the primary serving `key`'s slot, by `CLUSTER SLOTS` of a running node.
    pub fn primary_of(&self, key: &str) -> u16 {
        let port = self.running()[0];
        let mut con = self.connect(port).expect("connect");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query::<Vec<redis::Value>>(&mut con)
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|range| {
                let redis::Value::Array(parts) = range else {
                    panic!("CLUSTER SLOTS: {range:?}")
                };
                let start = redis::from_redis_value(parts[0].clone()).expect("start");
                let end = redis::from_redis_value(parts[1].clone()).expect("end");
                let redis::Value::Array(primary) = &parts[2] else {
                    panic!("CLUSTER SLOTS: {parts:?}")
                };
                let host = redis::from_redis_value(primary[0].clone()).expect("host");
                let port = redis::from_redis_value(primary[1].clone()).expect("port");
                (start, end, (host, port))
            })
            .collect();
        ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, (_, port))| *port)
            .expect("slot served")
    }

    /// The node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        let mut con = self.connect(port).expect("connect");
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut con)
            .expect("CLUSTER MYID")
    }

    /// Ports of the running nodes.
    pub fn running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_running())
            .map(|n| n.port)
            .collect()
    }

    /// Kills (`kill -9`) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).stop();
    }

    /// Starts the node on `port` again, from its `nodes.conf`: it rejoins the cluster.
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).resume();
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.running().into_iter().all(|port| {
                self.connect(port)
                    .and_then(|mut con| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut con))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn node_mut(&mut self, port: u16) -> &mut PrivateRedis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster")
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port_with_bus() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}
