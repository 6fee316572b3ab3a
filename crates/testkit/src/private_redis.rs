//! A `redis-server` of one test alone, on a free loopback port, for fault tests (stop, hang,
//! restart) that must not disturb the shared server. Used by the Redis conformance tests and
//! by the Redis backend's own tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fresh_dir, services_required};

/// A private `redis-server`, killed when dropped.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
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
            child: None,
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
        assert!(self.child.is_none(), "already running");
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
        self.child = Some(child);
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
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`...) to the running server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        let status = unsafe { libc::kill(pid, signal) };
        assert_eq!(status, 0, "kill({pid}, {signal})");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped (SIGSTOP) server must be continued to die promptly.
            // SAFETY: kill(2) on our own child's pid; no memory is passed.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.stop();
    }
}
