//! A MongoDB-wire server (SecantusDB's `secantusd-py`, the path in `CACHIER_TEST_SECANTUSD`)
//! of one test alone, on a free loopback port, for fault tests (stop, freeze, restart) that
//! must not disturb the shared server. Its data lives in memory: a restart starts empty.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ServerProcess;
use crate::service_url;

/// A private server, killed when dropped.
pub struct PrivateMongo {
    binary: String,
    port: u16,
    extra: Vec<String>,
    child: ServerProcess,
}

impl PrivateMongo {
    /// Starts a server and waits until it accepts connections; `None` (a loud SKIPPED line,
    /// or a failure when services are required) without `CACHIER_TEST_SECANTUSD`.
    pub fn start(test: &str) -> Option<PrivateMongo> {
        PrivateMongo::start_with(test, &[])
    }

    /// [`PrivateMongo::start`] with `extra` arguments (`--standalone`: a server without
    /// change streams, as a standalone `mongod`).
    pub fn start_with(test: &str, extra: &[&str]) -> Option<PrivateMongo> {
        let binary = service_url("CACHIER_TEST_SECANTUSD", test)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = PrivateMongo {
            binary,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: ServerProcess::default(),
        };
        server.resume();
        Some(server)
    }

    /// `mongodb://127.0.0.1:<port>/?directConnection=true`.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(!self.child.is_running(), "already running");
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--storage-path", ":memory:", "--log-level", "WARNING"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test server");
        self.child.started(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
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
