//! When nothing can be written, in both layouts, calls still return right values and nothing
//! panics. A cache directory that cannot be made is a warning and an uncached call (an `Err`
//! from `try_call`) until it can be. On a read-only file system and on a full one, stored
//! entries stay readable: hits are served; a miss is computed and returned uncached, with the
//! engine's warning.
//!
//! The file-system tests each mount their own small tmpfs (root can write through `chmod`, not
//! through a read-only mount). Where mounting is not permitted (or not Linux) they say so
//! loudly and skip.
#![cfg(unix)]

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cachier_backend_file::file_stem;
use common::{backend, capture_logs, multiplier, namespace, sidecar, snapshot, Counter};

const NAME: &str = "unwritable::f";

/// A tmpfs mounted for one test, unmounted when dropped (even when the test fails).
struct Mount {
    path: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs of `size` at `path`, or says why it cannot.
    fn tmpfs(path: &Path, size: &str) -> Result<Mount, String> {
        if !cfg!(target_os = "linux") {
            return Err("the mount options used here are Linux's".into());
        }
        fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            return Err(said.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        Ok(Mount {
            path: path.to_owned(),
        })
    }

    fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount read-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A fresh tmpfs of `size` with a cache directory inside, or `None` after a loud skip.
fn mounted(test: &str, size: &str) -> Option<(tempfile::TempDir, Mount, PathBuf)> {
    let root = tempfile::tempdir().unwrap();
    match Mount::tmpfs(&root.path().join("mnt"), size) {
        Ok(mount) => {
            let cache = mount.path.join("cache");
            Some((root, mount, cache))
        }
        Err(reason) => {
            // Straight to the process's stderr: `eprintln!` is captured by the test harness.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED {test}: cannot mount a tmpfs ({reason})"
            );
            None
        }
    }
}

fn claims_dir(cache: &Path, separate: bool) -> PathBuf {
    let stem = file_stem(NAME);
    if separate {
        cache.join(stem).join(".claims")
    } else {
        cache.join(format!("{stem}.claims"))
    }
}

/// Stores 1..=3 (doubled) in `cache` and closes everything; `calls` ends at 3.
fn populate(cache: &Path, separate: bool, calls: &Counter) {
    let f = multiplier(&backend(cache, separate), NAME, 2, calls);
    for x in 1..=3 {
        assert_eq!(f.call(x), 2 * x);
    }
    assert_eq!(calls.get(), 3);
}

/// Stores 1..=3 (doubled) in `cache`'s single store and leaves it as a process killed then
/// would: the entries only in the `-wal`, beside its `-shm`.
fn populate_then_kill(cache: &Path, calls: &Counter) {
    let copies = cache.join("copies");
    let store = backend(cache, false).store_path(&namespace(NAME));
    {
        let f = multiplier(&backend(cache, false), NAME, 2, calls);
        for x in 1..=3 {
            assert_eq!(f.call(x), 2 * x);
        }
        fs::create_dir(&copies).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            fs::copy(sidecar(&store, suffix), copies.join(format!("db{suffix}"))).unwrap();
        }
    } // closed: the entries are moved into the file, the -wal and -shm removed
    for suffix in ["", "-wal", "-shm"] {
        fs::rename(copies.join(format!("db{suffix}")), sidecar(&store, suffix)).unwrap();
    }
    fs::remove_dir(&copies).unwrap();
    assert!(fs::metadata(sidecar(&store, "-wal")).unwrap().len() > 0);
    assert_eq!(calls.get(), 3);
}

/// Writes to `dir/filler` until the file system is full.
fn fill(dir: &Path) {
    let mut file = fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("filling: {error}"),
        }
    }
    let _ = file.write_all(&[1]);
    assert!(
        fs::write(dir.join("one-more"), b"x".repeat(4096)).is_err(),
        "the file system is full"
    );
}

/// An unusable cache directory: a warning and an uncached call by default, an `Err` from
/// `try_call` (strict), in both modes. It starts working once the directory can be made.
#[test]
fn unwritable_cache_directory() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("not-a-directory");
        fs::write(&blocker, b"a file where the cache directory should go").unwrap();
        let dir = blocker.join("cache");
        let calls = Counter::new();
        let f = multiplier(&backend(&dir, separate), NAME, 2, &calls);
        let log = capture_logs(|| {
            assert_eq!(f.call(5), 10);
            assert_eq!(f.call(5), 10);
        });
        assert_eq!(calls.get(), 2, "computed uncached each time");
        assert!(f.backend_error_count() >= 2);
        assert!(
            log.contains("cache unavailable, computing uncached"),
            "{log}"
        );
        let err = f.try_call(5).unwrap_err();
        assert!(err.is_backend(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("file backend") && text.contains("not-a-directory"),
            "{text}"
        );
        assert!(f.clear_cache().is_err());
        // Fixed: the same function starts caching.
        fs::remove_file(&blocker).unwrap();
        assert_eq!(f.try_call(5).unwrap(), 10);
        assert_eq!(f.try_call(5).unwrap(), 10);
        assert_eq!(
            calls.get(),
            3,
            "strict calls fail before computing; cached once the directory could be made"
        );
    }
}

#[test]
fn read_only_file_system_serves_stored_entries() {
    // (separate_files, the store left as a killed process leaves it)
    for (separate, killed) in [(false, false), (false, true), (true, false)] {
        let Some((_root, mount, cache)) =
            mounted("read_only_file_system_serves_stored_entries", "8m")
        else {
            return;
        };
        let calls = Counter::default();
        if killed {
            populate_then_kill(&cache, &calls);
        } else {
            populate(&cache, separate, &calls);
        }
        // So that a claim has to create it, and cannot.
        fs::remove_dir_all(claims_dir(&cache, separate)).unwrap();
        mount.remount_read_only();
        let before = snapshot(&mount.path);
        let log = capture_logs(|| {
            let f = multiplier(&backend(&cache, separate), NAME, 2, &calls);
            for _ in 0..2 {
                for x in 1..=3 {
                    assert_eq!(f.call(x), 2 * x);
                }
            }
            assert_eq!(calls.get(), 3, "separate {separate}: hits served read-only");
            assert_eq!(f.try_call(2).unwrap(), 4, "strict hits too");
            assert_eq!(f.call(10), 20);
            assert_eq!(f.call(10), 20);
            assert_eq!(calls.get(), 5, "a miss is computed, and cannot be stored");
            assert_eq!(f.core().len().unwrap(), 3);
            assert_eq!(f.core().entries().unwrap().len(), 3);
            let key = f.key(&11).unwrap();
            let claim = f.core().claim(&key, Duration::from_secs(10));
            assert!(claim.is_err(), "no lock file can be made: {claim:?}");
        });
        if !separate {
            assert!(log.contains("database cannot be written"), "{log}");
        }
        assert!(
            log.contains("cache unavailable, computing uncached"),
            "separate {separate}: {log}"
        );
        assert_eq!(snapshot(&mount.path), before);
        drop(mount);
    }
}

#[test]
fn full_file_system_serves_stored_entries() {
    for separate in [false, true] {
        let Some((_root, mount, cache)) = mounted("full_file_system_serves_stored_entries", "2m")
        else {
            return;
        };
        let calls = Counter::default();
        populate(&cache, separate, &calls);
        fill(&mount.path);
        let mut opened = None;
        let log = capture_logs(|| {
            let f = multiplier(&backend(&cache, separate), NAME, 2, &calls);
            for _ in 0..2 {
                for x in 1..=3 {
                    assert_eq!(f.call(x), 2 * x);
                }
            }
            assert_eq!(
                calls.get(),
                3,
                "separate {separate}: hits served on a full disk"
            );
            assert_eq!(f.call(10), 20);
            assert_eq!(f.call(10), 20);
            opened = Some(f);
        });
        let f = opened.expect("opened");
        // A new entry file needs space; SQLite may still find room in pages its files already
        // hold (a WAL reused after a checkpoint), and then the miss is stored after all.
        let stored_anyway = !separate && calls.get() == 4;
        if !stored_anyway {
            assert_eq!(
                calls.get(),
                5,
                "separate {separate}: a miss is computed, and cannot be stored"
            );
            assert!(
                log.contains("cache unavailable, computing uncached"),
                "separate {separate}: {log}"
            );
            if !separate {
                assert!(log.contains("database cannot be written"), "{log}");
            }
        }
        // Space again: results are stored again, by the same function.
        fs::remove_file(mount.path.join("filler")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = calls.get();
            assert_eq!(f.call(20), 40);
            assert_eq!(f.call(20), 40);
            if calls.get() == before + 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "separate {separate}: results are not stored once there is space again"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Full again while the store is open: hits still served, misses still computed.
        fill(&mount.path);
        let calls_now = calls.get();
        for x in [1, 2, 3, 20] {
            assert_eq!(f.call(x), 2 * x);
        }
        assert_eq!(
            calls.get(),
            calls_now,
            "separate {separate}: hits while full"
        );
        assert_eq!(f.call(30), 60);
        drop(f);
        drop(mount);
    }
}
