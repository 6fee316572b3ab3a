//! Helpers shared by the integration tests that plant hazards in a cache directory.
#![allow(dead_code, unused_imports)] // each test file uses a part of them

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cachier_backend_file::FileBackend;
use cachier_core::{memoize, Memoized, Namespace};

pub use cachier_testkit::{capture_logs, Counter};

pub fn backend(dir: &Path, separate: bool) -> FileBackend {
    FileBackend::builder()
        .cache_dir(dir)
        .separate_files(separate)
        .build()
}

pub fn namespace(name: &str) -> Namespace {
    Namespace::new(name, None).unwrap()
}

/// `f(x) = x * factor`, counting calls.
pub fn multiplier(
    backend: &FileBackend,
    name: &str,
    factor: u64,
    calls: &Counter,
) -> Memoized<u64, u64> {
    let calls = calls.clone();
    memoize(name, move |x: u64| {
        calls.bump();
        x * factor
    })
    .backend(backend.clone())
    .build()
    .expect("build")
}

/// What a path under a snapshotted tree looks like: its kind, its size, its modification time
/// (a directory's changes whenever a name is created or removed in it) and a file's bytes or
/// a link's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    kind: &'static str,
    len: u64,
    mtime: (i64, i64),
    content: Vec<u8>,
}

/// Every path under `root` (itself included), without following links.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(_) => continue,
        };
        let kind = meta.file_type();
        let (kind, content) = if kind.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            ("link", target.into_os_string().into_encoded_bytes())
        } else if kind.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
            ("dir", Vec::new())
        } else {
            ("file", fs::read(&path).unwrap())
        };
        out.insert(
            path,
            Seen {
                kind,
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                content,
            },
        );
    }
    out
}

/// Names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A path with `suffix` appended to its file name.
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
