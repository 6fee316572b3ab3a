//! The `cachier` binary against every backend that other processes can reach: populated with
//! the library in this process, inspected and cleared by the tool in another.

use std::time::Duration;

use assert_cmd::Command;
use cachier_testkit::{fresh_dir, service_url, unique_name, with_user_info};

fn cachier(url: &str) -> Command {
    let mut cmd = Command::cargo_bin("cachier").expect("binary");
    cmd.arg("--backend")
        .arg(url)
        .env_remove("CACHIER_BACKEND_URL");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run cachier");
    assert!(
        out.status.success(),
        "cachier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Two entries of a fresh namespace in the store at `url`; returns the namespace.
fn populate(url: &str) -> String {
    let name = unique_name("cli");
    let backend = cachier::backend_from_url(url).expect("open backend");
    let f = cachier::memoize(&name, |x: u64| x * 10)
        .shared_backend(backend)
        .build()
        .expect("build");
    assert_eq!(f.call(1), 10);
    assert_eq!(f.call(2), 20);
    name
}

/// Everything the tool does, on one store.
fn exercise(url: &str) {
    let name = populate(url);
    // Namespaces that the store may list in another order.
    for suffix in ["zz", "aa", "mm"] {
        populate_again(url, &format!("{name}::{suffix}"));
    }
    let ls = stdout(cachier(url).arg("ls"));
    let listed: Vec<&str> = ls
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "ls is sorted:\n{ls}");
    let line = ls
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{ls}"));
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("2"),
        "two entries: {line}"
    );

    let json: serde_json::Value = serde_json::from_str(&stdout(cachier(url).args([
        "--json",
        "ls",
        "--stale-after",
        "1h",
    ])))
    .unwrap();
    let mine = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["namespace"] == name.as_str())
        .expect("listed in JSON");
    assert_eq!(mine["entries"], 2);
    assert_eq!(mine["stale"], 0);
    assert_eq!(mine["being_calculated"], 0);
    assert!(mine["size_bytes"].as_u64().unwrap() > 0);

    let show: serde_json::Value =
        serde_json::from_str(&stdout(cachier(url).args(["--json", "show", &name]))).unwrap();
    let entries = show.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .all(|e| e["completed"] == true && e["key"].as_str().unwrap().len() == 64));
    assert!(stdout(cachier(url).args(["show", &name])).contains("COMPLETED"));
    // Each entry shows the arguments it was computed from (previews are on by default).
    let mut arguments: Vec<&str> = entries
        .iter()
        .map(|e| e["arguments"].as_str().unwrap_or("-"))
        .collect();
    arguments.sort();
    assert_eq!(arguments, ["1", "2"], "{show}");
    let table = stdout(cachier(url).args(["show", &name]));
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("ARGUMENTS"), "{table}");
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.ends_with(" 1") || l.ends_with(" 2")),
        "{table}"
    );

    // Without --yes and without a terminal, nothing is cleared.
    let refused = cachier(url).args(["clear", &name]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));

    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        stdout(cachier(url).args(["cleanup", "--stale-after", "1s", &name, "--yes"]))
            .contains("deleted 2 entries older than 1s")
    );
    populate_again(url, &name);
    assert!(
        stdout(cachier(url).args(["clear-being-calculated", &name, "--yes"]))
            .contains("dropped 0 claims")
    );
    assert!(stdout(cachier(url).args(["clear", &name, "--yes"])).contains("cleared 1 entry of"));
    let after: serde_json::Value =
        serde_json::from_str(&stdout(cachier(url).args(["--json", "ls"]))).unwrap();
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["namespace"] != name.as_str()),
        "cleared namespace gone"
    );
    for suffix in ["zz", "aa", "mm"] {
        stdout(cachier(url).args(["clear", &format!("{name}::{suffix}"), "--yes"]));
    }

    let unknown = cachier(url)
        .args(["show", "no::such::function"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown namespace"));

    delete_one_entry(url);
}

/// `cachier delete` removes one entry, which the function then computes again; the other
/// stays. A key not stored is an error, a key that is not 64 hex digits a usage error.
fn delete_one_entry(url: &str) {
    let name = populate(url);
    let one = cachier::store::Key::of(&1u64).unwrap().to_hex();
    let two = cachier::store::Key::of(&2u64).unwrap().to_hex();
    assert!(stdout(cachier(url).args(["delete", &name, &one])).contains("deleted entry"));
    let show: serde_json::Value =
        serde_json::from_str(&stdout(cachier(url).args(["--json", "show", &name]))).unwrap();
    let keys: Vec<&str> = show
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [two.as_str()], "only the deleted entry went");

    let calls = cachier_testkit::Counter::new();
    let counted = calls.clone();
    let f = cachier::memoize(&name, move |x: u64| {
        counted.bump();
        x * 10
    })
    .shared_backend(cachier::backend_from_url(url).expect("open backend"))
    .build()
    .expect("build");
    assert_eq!(f.call(2), 20);
    assert_eq!(calls.get(), 0, "the other entry is still a hit");
    assert_eq!(f.call(1), 10);
    assert_eq!(calls.get(), 1, "the deleted entry is computed again");

    let json: serde_json::Value = serde_json::from_str(&stdout(
        cachier(url).args(["--json", "delete", &name, &two]),
    ))
    .unwrap();
    assert_eq!(json["count"], 1);
    let missing = cachier(url).args(["delete", &name, &two]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nothing stored under"));
    let bad = cachier(url)
        .args(["delete", &name, "xyz"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64 hex digits"));
}

fn populate_again(url: &str, name: &str) {
    let backend = cachier::backend_from_url(url).expect("open backend");
    let f = cachier::memoize(name, |x: u64| x)
        .shared_backend(backend)
        .build()
        .expect("build");
    f.call(3);
}

#[test]
fn file_backend() {
    let dir = fresh_dir("cli-file");
    exercise(&format!("file://{}", dir.display()));
}

#[test]
fn file_backend_separate_files() {
    let dir = fresh_dir("cli-file-separate");
    exercise(&format!("file://{}?separate_files=true", dir.display()));
}

#[test]
fn sqlite_backend() {
    let dir = fresh_dir("cli-sqlite");
    exercise(&format!("sqlite://{}", dir.join("cache.db").display()));
}

#[test]
fn postgres_backend() {
    if let Some(url) = service_url("CACHIER_TEST_POSTGRES_URL", "cli postgres_backend") {
        exercise(&url);
    }
}

#[test]
fn redis_backend() {
    if let Some(url) = service_url("CACHIER_TEST_REDIS_URL", "cli redis_backend") {
        exercise(&url);
    }
}

#[test]
fn mongo_backend() {
    if let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "cli mongo_backend") {
        exercise(&url);
    }
}

#[test]
fn s3_backend() {
    if let Some(url) = service_url("CACHIER_TEST_S3_URL", "cli s3_backend") {
        exercise(&url);
    }
}

#[test]
fn empty_cache() {
    let dir = fresh_dir("cli-empty");
    let url = format!("file://{}", dir.display());
    assert_eq!(
        stdout(cachier(&url).arg("ls")).trim(),
        "no cached functions"
    );
    assert_eq!(stdout(cachier(&url).args(["--json", "ls"])).trim(), "[]");
}

#[test]
fn bad_url_is_an_error() {
    let out = cachier("ftp://user:secret@host/x")
        .arg("ls")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown scheme"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "no password in messages: {stderr}"
    );
}

#[test]
fn unreachable_server_is_an_error() {
    let out = cachier("redis://127.0.0.1:1/0").arg("ls").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[test]
fn bad_duration_is_a_usage_error() {
    let dir = fresh_dir("cli-usage");
    let out = cachier(&format!("file://{}", dir.display()))
        .args(["cleanup", "--stale-after", "7x", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration"));
    let out = Command::cargo_bin("cachier")
        .unwrap()
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Everything the tool printed, both streams.
fn output_text(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run cachier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// URLs whose password a careless parser shows: an unencoded `/`, `?`, `#` or `@` in it, no
/// scheme, several hosts, secrets in query parameters. The servers are unreachable or the
/// URLs invalid, so every command fails, and its messages must not hold the password.
#[test]
fn malformed_urls_never_show_their_password() {
    use cachier_testkit::{MALFORMED_URLS, MALFORMED_URL_SECRET as SECRET};
    for &url in MALFORMED_URLS {
        for args in [&["ls"][..], &["--json", "ls"], &["show", "some::function"]] {
            let (code, text) = output_text(cachier(url).args(args));
            assert_eq!(code, Some(1), "{url} {args:?} fails: {text}");
            assert!(
                !text.contains(SECRET),
                "the password of {url} is shown by {args:?}: {text}"
            );
        }
        // The same URL from the environment.
        let (code, text) = output_text(
            Command::cargo_bin("cachier")
                .unwrap()
                .env("CACHIER_BACKEND_URL", url)
                .arg("ls"),
        );
        assert_eq!(code, Some(1), "{url} from the environment fails: {text}");
        assert!(!text.contains(SECRET), "{url} from the environment: {text}");
    }
}

/// `cachier ls` on a server that refuses the credentials of `url`: it fails, and its output
/// names the server's reason (`cause`, compared case-insensitively) exactly once.
fn refusal_is_explained_once(url: &str, cause: &str) {
    for args in [&["ls"][..], &["--json", "ls"], &["show", "some::function"]] {
        let (code, text) = output_text(cachier(url).args(args));
        assert_eq!(code, Some(1), "{args:?} fails: {text}");
        let lower = text.to_lowercase();
        assert_eq!(
            lower.matches(&cause.to_lowercase()).count(),
            1,
            "{args:?} names {cause:?} once: {text}"
        );
        assert!(!text.contains("wrong-password"), "{text}");
    }
}

#[test]
fn postgres_unknown_role_is_explained() {
    if let Some(url) = service_url("CACHIER_TEST_POSTGRES_URL", "cli postgres_unknown_role") {
        refusal_is_explained_once(
            &with_user_info(&url, "nosuchuser"),
            r#"role "nosuchuser" does not exist"#,
        );
    }
}

#[test]
fn redis_refused_credentials_are_explained() {
    if let Some(url) = service_url("CACHIER_TEST_REDIS_URL", "cli redis_refused_credentials") {
        refusal_is_explained_once(
            &with_user_info(&url, "nosuchuser:wrong-password"),
            "WRONGPASS invalid username-password pair or user is disabled",
        );
    }
}

#[test]
fn mongo_refused_credentials_are_explained() {
    if let Some(url) = service_url("CACHIER_TEST_MONGO_URL", "cli mongo_refused_credentials") {
        refusal_is_explained_once(
            &with_user_info(&url, "nosuchuser:wrong-password"),
            "authentication failed",
        );
    }
}

/// A closed port: the operating system's reason is shown, once.
#[test]
fn refused_connections_are_explained() {
    for url in [
        "redis://127.0.0.1:1/0",
        "postgres://postgres@127.0.0.1:1/test",
        "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=300",
    ] {
        let (code, text) = output_text(cachier(url).arg("ls"));
        assert_eq!(code, Some(1), "{url}: {text}");
        assert_eq!(
            text.matches("Connection refused").count(),
            1,
            "{url} names the reason once: {text}"
        );
    }
}

#[test]
fn show_lists_the_arguments_of_each_entry_unless_previews_are_off() {
    let dir = fresh_dir("cli-arguments");
    let url = format!("file://{}", dir.display());
    let backend = cachier::backend_from_url(&url).expect("open backend");
    let shown = unique_name("cli-shown");
    let f = cachier::memoize(&shown, |(n, s): (u64, String)| format!("{s}{n}"))
        .shared_backend(backend.clone())
        .build()
        .expect("build");
    f.call((7, "tab\there".into()));
    f.call((8, "x".repeat(500)));
    let hidden = unique_name("cli-hidden");
    let g = cachier::memoize(&hidden, |token: String| token.len())
        .shared_backend(backend)
        .preview_args(false)
        .build()
        .expect("build");
    g.call("s3cret-token".into());

    let table = stdout(cachier(&url).args(["show", &shown]));
    assert!(table.contains(r#"7, "tab\there""#), "{table}");
    let long = table
        .lines()
        .find(|l| l.contains("8, \"xxx"))
        .unwrap_or_else(|| panic!("{table}"));
    let preview = &long[long.find("8, ").unwrap()..];
    assert!(
        preview.ends_with('…') && preview.len() <= 120,
        "cut to 120 bytes: {preview}"
    );

    let out = stdout(cachier(&url).args(["show", &hidden]));
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.lines().nth(1).unwrap().ends_with(" -"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(cachier(&url).args(["--json", "show", &hidden]))).unwrap();
    assert_eq!(json[0]["arguments"], serde_json::Value::Null);
}

/// The files of `name`'s single store in `dir`: its database and SQLite sidecars, claims
/// directory, change counters and open lock.
fn store_files(dir: &std::path::Path, name: &str) -> Vec<String> {
    let stem = cachier::backends::file::file_stem(name);
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&format!("{stem}.")))
        .collect();
    files.sort();
    files
}

#[test]
fn clear_removes_the_files_of_a_store_nobody_has_open() {
    let dir = fresh_dir("cli-remove");
    let url = format!("file://{}", dir.display());
    let name = populate(&url);
    let other = populate(&url);
    let before = store_files(&dir, &name);
    for suffix in [".sqlite3", ".claims", ".changes", ".open.lock"] {
        assert!(
            before.iter().any(|f| f.ends_with(suffix)),
            "{suffix} in {before:?}"
        );
    }
    let out = stdout(cachier(&url).args(["clear", &name, "--yes"]));
    assert!(
        out.contains("cleared 2 entries") && out.contains("its files were removed"),
        "{out}"
    );
    assert_eq!(store_files(&dir, &name), Vec::<String>::new(), "all gone");
    assert_eq!(
        store_files(&dir, &other).len(),
        before.len(),
        "another function's stay"
    );

    // The function works again from nothing: it computes, stores, and is then a hit.
    let calls = cachier_testkit::Counter::new();
    let counted = calls.clone();
    let f = cachier::memoize(&name, move |x: u64| {
        counted.bump();
        x * 10
    })
    .shared_backend(cachier::backend_from_url(&url).expect("open backend"))
    .build()
    .expect("build");
    assert_eq!(f.call(1), 10);
    assert_eq!(f.call(1), 10);
    assert_eq!(calls.get(), 1, "stored again, then served");
    assert!(store_files(&dir, &name)
        .iter()
        .any(|f| f.ends_with(".sqlite3")));
}

/// Set in the child process of `clear_keeps_the_files_of_a_store_another_process_has_open`:
/// the store's URL and the function's name, on two lines.
const HOLDER_ENV: &str = "CACHIER_CLI_TEST_HOLDER";

/// Not a test of its own: in the child process that [`HOLDER_ENV`] marks, has a function's
/// store open until its stdin closes, calling it before and after.
#[test]
fn holder_process() {
    let Ok(spec) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let (url, name) = spec.split_once('\n').expect("url and name");
    let f = cachier::memoize(name, |x: u64| x * 10)
        .shared_backend(cachier::backend_from_url(url).expect("open backend"))
        .build()
        .expect("build");
    assert_eq!(f.call(1), 10);
    println!("holder: ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    println!("holder: still {}", f.call(1));
}

#[test]
fn clear_keeps_the_files_of_a_store_another_process_has_open() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = fresh_dir("cli-in-use");
    let url = format!("file://{}", dir.display());
    let name = unique_name("cli-in-use");
    // Three processes: this one (which never opens the store), a holder, and the tool.
    let mut holder = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "holder_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, format!("{url}\n{name}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    // (libtest may print the test's name on the same line.)
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.ends_with("holder: ready"));
    assert!(ready, "the holder opened the store");
    let before = store_files(&dir, &name);
    assert!(before.iter().any(|f| f.ends_with(".sqlite3")), "{before:?}");

    let out = stdout(cachier(&url).args(["clear", &name, "--yes"]));
    assert!(
        out.contains("cleared 1 entry")
            && out.contains("its files stay while a process has it open"),
        "{out}"
    );
    let after: Vec<String> = store_files(&dir, &name)
        .into_iter()
        .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm"))
        .collect();
    assert!(
        before
            .iter()
            .filter(|f| !f.ends_with("-wal") && !f.ends_with("-shm"))
            .eq(after.iter()),
        "nothing removed under the holder: {before:?} then {after:?}"
    );

    // The holder goes on with the same files: it computes the cleared entry again and stores
    // it where the tool sees it.
    drop(holder.stdin.take());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(holder.wait().unwrap().success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("holder: still 10")),
        "{rest:?}"
    );
    let show: serde_json::Value =
        serde_json::from_str(&stdout(cachier(&url).args(["--json", "show", &name]))).unwrap();
    assert_eq!(show.as_array().unwrap().len(), 1, "{show}");

    // With the holder gone, the next clear removes the files.
    let out = stdout(cachier(&url).args(["clear", &name, "--yes"]));
    assert!(out.contains("its files were removed"), "{out}");
    assert_eq!(store_files(&dir, &name), Vec::<String>::new());
}

#[test]
fn clear_removes_the_empty_claims_directory() {
    let dir = fresh_dir("cli-claims");
    let url = format!("file://{}", dir.display());
    let name = populate(&url);
    let claims = dir.join(format!(
        "{}.claims",
        cachier::backends::file::file_stem(&name)
    ));
    assert!(
        claims.is_dir(),
        "the computations claimed through lock files"
    );
    assert!(stdout(cachier(&url).args(["clear", &name, "--yes"])).contains("cleared 2 entries"));
    assert!(!claims.exists(), "the empty claims directory is gone");
}

#[test]
fn missing_cache_directory_is_an_error() {
    let dir = fresh_dir("cli-missing").join("no-such-dir");
    for command in [&["ls"][..], &["show", "a::b"], &["clear", "a::b", "--yes"]] {
        let out = cachier(&format!("file://{}", dir.display()))
            .args(command)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("does not exist") && stderr.contains("no-such-dir"),
            "{stderr}"
        );
    }
    assert!(!dir.exists(), "not created by looking");
}

/// Enough entries that `show` outgrows the pipe's buffer, so it writes after the reader left.
fn many_entries(url: &str) -> String {
    let name = unique_name("cli-many");
    let f = cachier::memoize(&name, |x: u64| x)
        .shared_backend(cachier::backend_from_url(url).unwrap())
        .build()
        .unwrap();
    for x in 0..2_000 {
        f.precache_value(&x, x).unwrap();
    }
    name
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::io::Read;
    let dir = fresh_dir("cli-pipe");
    let url = format!("file://{}", dir.display());
    let name = many_entries(&url);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cachier"))
        .args(["--backend", &url, "show", &name])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap(); // `| head -c 100`
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no panic, no message"
    );
}

/// On a terminal, a listing shows that it is working; piped, nothing is added.
#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = fresh_dir("cli-progress");
    let url = format!("file://{}", dir.display());
    let name = many_entries(&url);
    let piped = cachier(&url).args(["show", &name]).output().unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8_lossy(&piped.stderr), "");
    // `script` gives the tool a terminal; the transcript holds what it drew.
    let transcript = dir.join("transcript");
    let command = format!(
        "{} --backend {url} show {name} >/dev/null",
        assert_cmd::cargo::cargo_bin("cachier").display()
    );
    let status = std::process::Command::new("script")
        .args(["-qec", &command])
        .arg(&transcript)
        .env_remove("CACHIER_BACKEND_URL")
        // A terminal session names its terminal; without `TERM` it counts as a dumb one.
        .env("TERM", "xterm")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("`script` (util-linux) runs the tool on a terminal");
    assert!(status.success());
    let drawn = std::fs::read(&transcript).unwrap();
    assert!(
        String::from_utf8_lossy(&drawn).contains(&format!("listing {name}")),
        "{}",
        String::from_utf8_lossy(&drawn)
    );
}
