//! SQL backend rows: SQLite (a file in a temporary directory) and PostgreSQL
//! (`CACHIER_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), each next
//! to the raw driver's prepared point SELECT (hits) and prepared upsert (misses) on the same
//! table, measured in the same run. With `CACHIER_BENCH_PIN_CPU=<n>` the PostgreSQL rows run
//! pinned to one CPU, with the server processes of their connections (see `Pinning`).

use crate::{overhead_fn, run_name, scattered, Config, Row};

/// The hex keys of arguments `0..n`, as the backend stores them.
fn keys(f: &cachier::Memoized<u64, u64>, n: usize) -> Vec<String> {
    (0..n as u64)
        .map(|k| f.key(&k).expect("key").to_hex())
        .collect()
}

const SELECT: &str = "SELECT value FROM cachier_cache WHERE function_id = $1 AND key = $2";

/// SQLite rows at every size.
#[cfg(feature = "sqlite")]
pub fn sqlite_rows(config: &Config) -> Vec<Row> {
    let dir = std::env::temp_dir().join(run_name("sqlite").replace("::", "-"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let path = dir.join(format!("cache-{n}.db"));
        let backend = cachier::backends::sql::SqlBackend::sqlite(&path).expect("sqlite backend");
        let f = overhead_fn(&run_name("sqlite"))
            .backend(backend)
            .build()
            .expect("build");
        crate::prefill(&f, n);
        let keys = keys(&f, n);
        let fid = f.namespace().as_str().to_owned();
        let raw = rusqlite::Connection::open(&path).expect("raw connection");
        raw.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        // As the backend's connections run: WAL (set by the backend), synchronous=NORMAL.
        raw.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        let select = SELECT.replace('$', "?");
        let (hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(f.call(scattered(i, n)));
            },
            |i| {
                let key = &keys[scattered(i, n) as usize];
                let mut stmt = raw.prepare_cached(&select).expect("prepare");
                let v: Vec<u8> = stmt
                    .query_row((&fid, key), |r| r.get(0))
                    .expect("raw select");
                std::hint::black_box(v);
            },
        );
        rows.push(Row::new(
            "sqlite",
            n,
            "hit",
            hit,
            "rusqlite prepared point SELECT",
            raw_hit,
        ));
        let base = 1u64 << 40;
        let upsert = "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) VALUES (?1, ?2, ?3, 0, TRUE) \
                      ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value";
        let raw_fid = format!("{fid}-raw");
        let (miss, raw_miss) = config.paired(
            |i| {
                std::hint::black_box(f.call(base + i));
            },
            |i| {
                let mut stmt = raw.prepare_cached(upsert).expect("prepare");
                stmt.execute((&raw_fid, format!("{i:064x}"), &b"12345678"[..]))
                    .expect("raw upsert");
            },
        );
        rows.push(Row::new(
            "sqlite",
            n,
            "miss",
            miss,
            "rusqlite prepared upsert (one write)",
            raw_miss,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// The CPU affinity of this process and of the server processes of its PostgreSQL
/// connections, with `CACHIER_BENCH_PIN_CPU=<n>`: each connection is served by a process of its
/// own, and whether the scheduler runs it on the caller's CPU or the other one changes what a
/// round trip costs by 1.5–3× for as long as it stays there. Unpinned, a row and its baseline
/// (two connections, two processes) can each land either way, and their ratio measures that
/// luck rather than the code; pinned to one CPU, both pay the same.
#[cfg(feature = "postgres")]
struct Pinning {
    cpu: String,
    /// This process's mask before, restored on drop.
    restore: String,
}

#[cfg(feature = "postgres")]
impl Pinning {
    /// Pins this process (every thread) to the CPU of `CACHIER_BENCH_PIN_CPU`; `None` when
    /// unset or when `taskset` fails (with a note).
    fn from_env() -> Option<Pinning> {
        let cpu = std::env::var("CACHIER_BENCH_PIN_CPU").ok()?;
        let me = std::process::id().to_string();
        let restore = taskset(&["-p", &me])?
            .rsplit(':')
            .next()
            .map(|mask| mask.trim().to_owned())?;
        taskset(&["-a", "-p", "-c", &cpu, &me])?;
        Some(Pinning { cpu, restore })
    }

    /// Pins the server processes of the connections named `application_name` and of `raw`.
    fn servers(&self, raw: &mut postgres::Client, application_name: &str) {
        let pids: Vec<i32> = raw
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 OR pid = pg_backend_pid()",
                &[&application_name],
            )
            .expect("server processes")
            .iter()
            .map(|r| r.get(0))
            .collect();
        for pid in pids {
            taskset(&["-p", "-c", &self.cpu, &pid.to_string()]);
        }
    }
}

#[cfg(feature = "postgres")]
impl Drop for Pinning {
    fn drop(&mut self) {
        taskset(&["-a", "-p", &self.restore, &std::process::id().to_string()]);
    }
}

/// Runs `taskset` (util-linux); its output, or `None` with a note.
#[cfg(feature = "postgres")]
fn taskset(args: &[&str]) -> Option<String> {
    match std::process::Command::new("taskset").args(args).output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            eprintln!("postgres rows: taskset {args:?} failed: {}", why.trim());
            None
        }
        Err(error) => {
            eprintln!("postgres rows: cannot run taskset ({error}); not pinned");
            None
        }
    }
}

/// `url` with `application_name` set, so the bench can find its connections' server processes.
#[cfg(feature = "postgres")]
fn named(url: &str, application_name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={application_name}")
}

/// PostgreSQL rows at every size; none (with a note) when the server cannot be reached.
#[cfg(feature = "postgres")]
pub fn postgres_rows(config: &Config) -> Vec<Row> {
    let url = std::env::var("CACHIER_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pinning = Pinning::from_env();
    let application_name = format!("cachier-bench-{}", std::process::id());
    let ours_url = named(&url, &application_name);
    let mut raw = match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("postgres rows skipped: cannot connect ({error})");
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    for &n in &config.sizes {
        let backend =
            cachier::backends::sql::SqlBackend::postgres(&ours_url).expect("postgres backend");
        let f = overhead_fn(&run_name("postgres"))
            .backend(backend)
            .build()
            .expect("build");
        f.call(0); // creates the table on a fresh database
        let keys = keys(&f, n);
        let fid = f.namespace().as_str().to_owned();
        // Bulk prefill through the raw driver in one transaction (the same rows `put` writes).
        {
            let value = cachier::store::codec::encode(&0u64).expect("encode");
            let mut tx = raw.transaction().expect("begin");
            let insert = tx
                .prepare(
                    "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) \
                     VALUES ($1, $2, $3, now(), TRUE) ON CONFLICT (function_id, key) DO NOTHING",
                )
                .expect("prepare");
            for key in &keys {
                tx.execute(&insert, &[&fid, key, &value]).expect("prefill");
            }
            tx.commit().expect("commit");
        }
        // The same rows through the native async path (tokio-postgres), awaited on a
        // current-thread runtime: `block_on` per call is included in the time.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let g = cachier::memoize_async(&fid, |x: u64| async move { x.wrapping_mul(2) })
            .backend(
                cachier::backends::sql::SqlBackend::postgres(&ours_url).expect("postgres backend"),
            )
            .build()
            .expect("build");
        rt.block_on(g.call(0)); // opens its connection
        if let Some(pinning) = &pinning {
            pinning.servers(&mut raw, &application_name);
        }
        let select = raw.prepare(SELECT).expect("prepare");
        let mut raw_select = |i| {
            let key = &keys[scattered(i, n) as usize];
            let v: Vec<u8> = raw
                .query_one(&select, &[&fid, key])
                .expect("raw select")
                .get(0);
            std::hint::black_box(v);
        };
        let (hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(f.call(scattered(i, n)));
            },
            &mut raw_select,
        );
        rows.push(Row::new(
            "postgres",
            n,
            "hit",
            hit,
            "postgres prepared point SELECT",
            raw_hit,
        ));
        let (async_hit, raw_hit) = config.paired(
            |i| {
                std::hint::black_box(rt.block_on(g.call(scattered(i, n))));
            },
            &mut raw_select,
        );
        rows.push(Row::new(
            "postgres",
            n,
            "async hit",
            async_hit,
            "postgres prepared point SELECT",
            raw_hit,
        ));
        let base = 1u64 << 40;
        let raw_fid = format!("{fid}-raw");
        let upsert = raw
            .prepare(
                "INSERT INTO cachier_cache (function_id, key, value, stored_at, completed) VALUES ($1, $2, $3, now(), TRUE) \
                 ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value",
            )
            .expect("prepare");
        let (miss, raw_miss) = config.paired(
            |i| {
                std::hint::black_box(f.call(base + i));
            },
            |i| {
                raw.execute(
                    &upsert,
                    &[&raw_fid, &format!("{i:064x}"), &&b"12345678"[..]],
                )
                .expect("raw upsert");
            },
        );
        rows.push(Row::new(
            "postgres",
            n,
            "miss",
            miss,
            "postgres prepared upsert (one write)",
            raw_miss,
        ));
        // A write alone: `precache_value` over the stored keys, next to the same upsert.
        let (put, raw_put) = config.paired(
            |i| {
                let k = scattered(i, n);
                std::hint::black_box(f.precache_value(&k, k.wrapping_mul(2)).expect("put"));
            },
            |i| {
                raw.execute(
                    &upsert,
                    &[
                        &raw_fid,
                        &format!("{:064x}", scattered(i, n)),
                        &&b"12345678"[..],
                    ],
                )
                .expect("raw upsert");
            },
        );
        rows.push(Row::new(
            "postgres",
            n,
            "put (precache_value)",
            put,
            "postgres prepared upsert (one write)",
            raw_put,
        ));
        // Leave the shared table as it was.
        f.clear_cache().expect("clear");
        raw.execute(
            "DELETE FROM cachier_cache WHERE function_id = $1",
            &[&raw_fid],
        )
        .expect("cleanup");
    }
    rows
}
