//! A private test server's process: signalled while it runs, killed and reaped when stopped or
//! dropped.

use std::process::Child;

/// The process of a private server, if it runs.
#[derive(Default)]
pub(crate) struct ServerProcess(Option<Child>);

impl ServerProcess {
    /// Takes `child` as the running process.
    pub(crate) fn started(&mut self, child: Child) {
        self.0 = Some(child);
    }

    /// Whether it runs.
    pub(crate) fn is_running(&self) -> bool {
        self.0.is_some()
    }

    /// Kills it (`kill -9`) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("kill the test server");
            child.wait().expect("reap the test server");
        }
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`...) to it.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let pid = self.0.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        let status = unsafe { libc::kill(pid, signal) };
        assert_eq!(status, 0, "kill({pid}, {signal})");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.0 {
            // A stopped (SIGSTOP) server must be continued to die promptly.
            // SAFETY: kill(2) on our own child's pid; no memory is passed.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.stop();
    }
}
