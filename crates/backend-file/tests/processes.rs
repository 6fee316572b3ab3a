//! Several real processes on one cache directory: concurrent writers of different keys lose
//! nothing, `kill -9` in the middle of writes never leaves a store that fails to open or
//! returns a wrong value, and the claim of a killed process is taken over at once.
//!
//! This binary is its own child: `processes child <role> ...` runs one role; without
//! arguments it runs every test and exits non-zero if one fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_backend_file::FileBackend;
use cachier_core::{Backend, Claim, Core, Key, Namespace};

const NAMESPACE: &str = "processes::stress";

fn core(dir: &Path, separate: bool) -> Arc<dyn Core> {
    let backend = FileBackend::builder()
        .cache_dir(dir)
        .separate_files(separate)
        .build();
    backend
        .core(&Namespace::new(NAMESPACE, None).unwrap())
        .expect("core")
}

fn key(i: u64) -> Key {
    Key::of(&i).unwrap()
}

/// The only correct value of entry `i`: long enough to span several pages now and then.
fn value(i: u64) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.resize(64 + (i % 7) as usize * 300, (i % 251) as u8);
    v
}

fn child(args: &[String]) {
    let dir = PathBuf::from(&args[1]);
    let separate = args[2] == "separate";
    let core = core(&dir, separate);
    match args[0].as_str() {
        // writer START COUNT ROUNDS: puts keys START..START+COUNT, ROUNDS times over.
        "writer" => {
            let (start, count, rounds): (u64, u64, u64) = (
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            );
            println!("ready");
            for _ in 0..rounds {
                for i in start..start + count {
                    core.put(&key(i), &value(i), None).expect("put");
                }
            }
        }
        // claimer KEY: claims KEY, says so, and computes forever.
        "claimer" => {
            let i: u64 = args[3].parse().unwrap();
            match core
                .claim(&key(i), Duration::from_secs(3600))
                .expect("claim")
            {
                Claim::Claimed(_) => println!("claimed"),
                Claim::Busy => println!("busy"),
            }
            std::thread::sleep(Duration::from_secs(3600));
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(
    role: &str,
    dir: &Path,
    separate: bool,
    extra: &[String],
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("child")
        .arg(role)
        .arg(dir)
        .arg(if separate { "separate" } else { "single" })
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

fn first_line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).expect("child output");
    line.trim().to_owned()
}

fn fresh(label: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("cachier-file-processes").join(format!(
        "{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("cache")
}

/// Four processes write 500 different keys each at the same time; every one is there after.
fn concurrent_writers_lose_nothing(separate: bool) {
    let dir = fresh("writers");
    let per = 500u64;
    let children: Vec<_> = (0..4u64)
        .map(|p| {
            spawn(
                "writer",
                &dir,
                separate,
                &[(p * per).to_string(), per.to_string(), "1".into()],
            )
        })
        .collect();
    for (mut child, _out) in children {
        assert!(child.wait().unwrap().success(), "a writer failed");
    }
    let core = core(&dir, separate);
    for i in 0..4 * per {
        let entry = core
            .get(&key(i))
            .unwrap()
            .unwrap_or_else(|| panic!("entry {i} lost"));
        assert_eq!(
            entry.value.as_deref(),
            Some(value(i).as_slice()),
            "entry {i}"
        );
        assert!(entry.is_completed() && !entry.being_calculated());
    }
    assert_eq!(core.len().unwrap(), 4 * per);
}

/// A writer is killed with SIGKILL at a random point of its writes, 8 times; then the store
/// opens and every entry is absent or correct.
fn kill_during_writes_never_corrupts(separate: bool) {
    let dir = fresh("kill");
    let count = 400u64;
    let mut seed = std::process::id() as u64;
    for round in 0..8 {
        // Two writers at once, so the kill often lands while the other one writes too.
        let (mut victim, mut out) = spawn(
            "writer",
            &dir,
            separate,
            &["0".into(), count.to_string(), "1000".into()],
        );
        let (mut peer, _peer_out) = spawn(
            "writer",
            &dir,
            separate,
            &[(count / 2).to_string(), count.to_string(), "1".into()],
        );
        assert_eq!(first_line(&mut out), "ready");
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 150));
        victim.kill().expect("kill -9");
        let status = victim.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was killed mid-way"
        );
        assert!(
            peer.wait().unwrap().success(),
            "round {round}: the other writer was not disturbed"
        );
    }
    let core = core(&dir, separate);
    for i in 0..count + count / 2 {
        match core.get(&key(i)).expect("store opens and reads") {
            Some(entry) => assert_eq!(
                entry.value.as_deref(),
                Some(value(i).as_slice()),
                "entry {i} is wrong"
            ),
            None => assert!(
                i < count / 2,
                "entry {i} of a peer's completed round is lost"
            ),
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no store was ever damaged: {leftovers:?}"
    );
}

/// The claim of a process killed mid-computation is visible while it lives and gone the moment
/// it dies: no lease to wait out, no `clear_being_calculated()`.
fn dead_claim_is_taken_over_at_once(separate: bool) {
    let dir = fresh("dead-claim");
    let (mut holder, mut out) = spawn("claimer", &dir, separate, &["7".into()]);
    assert_eq!(first_line(&mut out), "claimed");
    let core = core(&dir, separate);
    let seen = core.get(&key(7)).unwrap().expect("placeholder");
    assert!(
        seen.being_calculated(),
        "the live claim of another process is visible"
    );
    assert_eq!(
        core.claim(&key(7), Duration::from_secs(1)).unwrap(),
        Claim::Busy
    );
    assert!(
        !core.wait(&key(7), Duration::from_millis(100)).unwrap(),
        "waiting while it lives"
    );
    let waiter = {
        let core = core.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            assert!(core.wait(&key(7), Duration::from_secs(30)).unwrap());
            started.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    holder.kill().expect("kill -9");
    holder.wait().unwrap();
    let waited = waiter.join().unwrap();
    let woke_after_kill = waited.saturating_sub(Duration::from_millis(200));
    assert!(
        woke_after_kill < Duration::from_millis(150),
        "waiter woke {woke_after_kill:?} after the kill"
    );
    assert!(core
        .get(&key(7))
        .unwrap()
        .is_none_or(|e| !e.being_calculated()));
    match core.claim(&key(7), Duration::from_secs(1)).unwrap() {
        Claim::Claimed(token) => core.put(&key(7), b"mine", Some(&token)).unwrap(),
        Claim::Busy => panic!("the dead claim still counts"),
    }
    assert!(
        killed.elapsed() < Duration::from_millis(500),
        "taken over in {:?}",
        killed.elapsed()
    );
    assert_eq!(
        core.get(&key(7)).unwrap().unwrap().value.as_deref(),
        Some(b"mine".as_slice())
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        child(&args[1..]);
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    type Test = (&'static str, fn(bool));
    let tests: Vec<Test> = vec![
        (
            "concurrent_writers_lose_nothing",
            concurrent_writers_lose_nothing,
        ),
        (
            "kill_during_writes_never_corrupts",
            kill_during_writes_never_corrupts,
        ),
        (
            "dead_claim_is_taken_over_at_once",
            dead_claim_is_taken_over_at_once,
        ),
    ];
    let mut failed = Vec::new();
    let mut passed = 0;
    for (name, test) in tests {
        for separate in [false, true] {
            let full = format!("{name}::{}", if separate { "separate" } else { "single" });
            if filter.as_ref().is_some_and(|f| !full.contains(f.as_str())) {
                continue;
            }
            let started = Instant::now();
            match std::panic::catch_unwind(|| test(separate)) {
                Ok(()) => {
                    passed += 1;
                    println!("test {full} ... ok ({:?})", started.elapsed());
                }
                Err(_) => {
                    println!("test {full} ... FAILED");
                    failed.push(full);
                }
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
