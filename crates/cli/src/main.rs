//! `cachier`: list, inspect and clear caches on any cachier backend.
//!
//! Exit codes: 0 ok, 1 error (unreachable server, unknown namespace...), 2 usage.

mod report;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cachier::{
    store::{Backend, Key, Namespace},
    Error,
};
use clap::{Parser, Subcommand};

use report::{NamespaceReport, Output};

/// List, inspect and clear cachier caches.
#[derive(Parser, Debug)]
#[command(name = "cachier", version, about, long_about = None)]
struct Cli {
    /// The store: file:///dir, sqlite:///path, postgres://…, redis://…, mongodb://…, s3://bucket/prefix
    /// [default: the file backend in the global cache directory]
    #[arg(long, global = true, env = "CACHIER_BACKEND_URL")]
    backend: Option<String>,
    /// Machine-readable JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every cached function: entries, size, oldest and newest entry, being calculated, stale.
    Ls {
        /// Count entries older than this as stale (for example 7d, 12h, 30m).
        #[arg(long, value_parser = duration)]
        stale_after: Option<Duration>,
    },
    /// One function's entries: key, age, size, completed, being calculated, claim owner, and
    /// the arguments each was computed from (where the entry stores a preview of them).
    Show {
        /// The function's namespace, as `cachier ls` prints it.
        namespace: String,
    },
    /// Delete one entry of a function (its next call for those arguments computes again).
    /// A computation of that entry in flight is left alone; no confirmation is asked.
    Delete {
        /// The function's namespace.
        namespace: String,
        /// The entry's key: 64 hex digits, as `cachier show` prints it.
        #[arg(value_parser = key)]
        key: Key,
    },
    /// Delete every entry of a function. On the file backend, also remove its files when no
    /// process has its store open.
    Clear {
        /// The function's namespace.
        namespace: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Drop every claim of a function, so its next caller computes.
    ClearBeingCalculated {
        /// The function's namespace.
        namespace: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Delete entries older than --stale-after, of one function or of all.
    Cleanup {
        /// Entries older than this go (for example 7d).
        #[arg(long, value_parser = duration)]
        stale_after: Duration,
        /// Only this function (default: every function).
        namespace: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    cachier_settings::parse_duration(text)
}

fn key(text: &str) -> Result<Key, String> {
    Key::from_hex(text.trim())
        .ok_or_else(|| "a key is 64 hex digits, as `cachier show` prints it".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits with 2 on usage errors
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Whatever a driver put in its message, the URL's secrets are not shown.
            let url = cli.backend.as_deref().unwrap_or_default();
            eprintln!(
                "cachier: {}",
                cachier_settings::redact_message(url, &message)
            );
            ExitCode::from(1)
        }
    }
}

fn open(cli: &Cli) -> Result<Arc<dyn Backend>, String> {
    let url = match &cli.backend {
        Some(url) => url.clone(),
        None => format!(
            "file://{}",
            cachier::get_global_params().resolved_cache_dir().display()
        ),
    };
    let backend = cachier::backend_from_url(&url).map_err(|e| explain(&e, &url))?;
    // The file backend creates its directory on first use; a tool that only looks must not,
    // and an empty listing of a mistyped path would hide the mistake.
    if let Some(dir) = file_dir(&url) {
        if !dir.is_dir() {
            return Err(format!(
                "the cache directory {} does not exist (or is not a directory)",
                dir.display()
            ));
        }
    }
    Ok(backend)
}

/// The directory of a `file://` URL (already checked by `backend_from_url`).
fn file_dir(url: &str) -> Option<PathBuf> {
    let (scheme, rest) = url.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    let path = rest.split('?').next()?.strip_prefix("//")?;
    Some(PathBuf::from(
        path.strip_prefix("localhost").unwrap_or(path),
    ))
}

/// Whether a `file://` URL uses one store per function (not `separate_files`).
fn single_store(url: &str) -> bool {
    !url.contains("separate_files=true") && !url.contains("separate_files=1")
}

/// Every namespace of the store, sorted (stores list them in their own order).
fn namespaces(backend: &dyn Backend, url: &str) -> Result<Vec<Namespace>, String> {
    let mut namespaces = backend.namespaces().map_err(|e| explain(&e, url))?;
    namespaces.sort();
    Ok(namespaces)
}

/// `1 entry`, `2 entries`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An error message that says what was wrong, down to its last cause (each named once), and
/// what to do.
fn explain(error: &Error, url: &str) -> String {
    let shown = cachier_settings::redact_url(url);
    let message = cachier_settings::chain_message(error);
    match error {
        Error::Backend { .. } => format!("{message}\n  the store at {shown} is unreachable or failing: check that the server runs and the URL is right"),
        Error::Unsupported { .. } => format!("{message}\n  this backend cannot list its contents"),
        _ => message,
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let backend = open(cli)?;
    let url = match &cli.backend {
        Some(url) => url.clone(),
        None => format!(
            "file://{}",
            cachier::get_global_params().resolved_cache_dir().display()
        ),
    };
    let fail = |e: Error| explain(&e, &url);
    let out = Output::new(cli.json);
    match &cli.command {
        Command::Ls { stale_after } => {
            let progress = report::progress("listing");
            let namespaces = namespaces(&*backend, &url)?;
            report::steps(&progress, namespaces.len() as u64);
            let mut reports = Vec::new();
            for namespace in namespaces {
                progress.set_message(namespace.to_string());
                let entries = backend
                    .core(&namespace)
                    .and_then(|c| c.entries())
                    .map_err(fail)?;
                reports.push(NamespaceReport::of(&namespace, &entries, *stale_after));
                progress.inc(1);
            }
            progress.finish_and_clear();
            out.namespaces(&reports, stale_after.is_some());
        }
        Command::Show { namespace } => {
            let namespace = known(&*backend, namespace, &url)?;
            let progress = report::progress(&format!("listing {namespace}"));
            let entries = backend
                .core(&namespace)
                .and_then(|c| c.entries())
                .map_err(fail)?;
            progress.finish_and_clear();
            out.entries(&namespace, &entries);
        }
        Command::Delete { namespace, key } => {
            let namespace = known(&*backend, namespace, &url)?;
            let core = backend.core(&namespace).map_err(fail)?;
            if !core.remove(key).map_err(fail)? {
                return Err(format!(
                    "nothing stored under {key} in {namespace}: `cachier show {namespace}` lists its entries"
                ));
            }
            out.done(&format!("deleted entry {key} of {namespace}"), 1);
        }
        Command::Clear { namespace, yes } => {
            let namespace = known(&*backend, namespace, &url)?;
            let core = backend.core(&namespace).map_err(fail)?;
            let n = core.len().map_err(fail)?;
            let entries = count(n, "entry", "entries");
            if confirm(*yes, &format!("delete {entries} of {namespace}?"))? {
                core.clear_cache().map_err(fail)?;
                let mut message = format!("cleared {entries} of {namespace}");
                if let Some(dir) = file_dir(&url) {
                    // This process's own hold on the store goes first: it counts as a user.
                    drop(core);
                    drop(backend);
                    message.push_str(&remove_unused_files(&dir, &namespace, !single_store(&url)));
                }
                out.done(&message, n);
            }
        }
        Command::ClearBeingCalculated { namespace, yes } => {
            let namespace = known(&*backend, namespace, &url)?;
            let core = backend.core(&namespace).map_err(fail)?;
            let claims = core
                .entries()
                .map_err(fail)?
                .iter()
                .filter(|e| e.being_calculated())
                .count() as u64;
            let what = count(claims, "claim", "claims");
            if confirm(*yes, &format!("drop {what} of {namespace}?"))? {
                core.clear_being_calculated().map_err(fail)?;
                out.done(&format!("dropped {what} of {namespace}"), claims);
            }
        }
        Command::Cleanup {
            stale_after,
            namespace,
            yes,
        } => {
            let namespaces = match namespace {
                Some(name) => {
                    vec![known(&*backend, name, &url)?]
                }
                None => namespaces(&*backend, &url)?,
            };
            let age = report::age_text(*stale_after);
            let what = match namespace {
                Some(name) => format!("delete entries of {name} older than {age}?"),
                None => format!(
                    "delete entries older than {age} in {}?",
                    count(namespaces.len() as u64, "function", "functions")
                ),
            };
            if confirm(*yes, &what)? {
                let progress = report::progress("cleaning up");
                report::steps(&progress, namespaces.len() as u64);
                let mut deleted = 0;
                for namespace in &namespaces {
                    progress.set_message(namespace.to_string());
                    deleted += backend
                        .core(namespace)
                        .and_then(|c| c.delete_stale_entries(*stale_after))
                        .map_err(fail)?;
                    progress.inc(1);
                }
                progress.finish_and_clear();
                out.done(
                    &format!(
                        "deleted {} older than {age}",
                        count(deleted, "entry", "entries")
                    ),
                    deleted,
                );
            }
        }
    }
    Ok(())
}

/// Removes the files of a cleared function of the file backend (its empty store, claims
/// directory and change counters) unless a process has its store open: those keep working on
/// the files they have open. Returns what to add to the outcome; a failure to remove is a
/// note, not an error, since the entries are cleared either way.
fn remove_unused_files(dir: &std::path::Path, namespace: &Namespace, separate: bool) -> String {
    use cachier::backends::file::{remove_unused_store, Removal};
    match remove_unused_store(dir, namespace, separate) {
        Ok(Removal::Removed) => "; its files were removed".into(),
        Ok(Removal::InUse) => "; its files stay while a process has it open".into(),
        Ok(Removal::NotEmpty | Removal::Absent) => String::new(),
        Err(error) => format!(
            "; its files stay: {}",
            cachier_settings::chain_message(&error)
        ),
    }
}

/// The namespace named `name`, if the store has it.
fn known(backend: &dyn Backend, name: &str, url: &str) -> Result<Namespace, String> {
    let namespace = Namespace::new(name, None).map_err(|e| explain(&e, url))?;
    let all = backend.namespaces().map_err(|e| explain(&e, url))?;
    if all.contains(&namespace) {
        Ok(namespace)
    } else {
        Err(format!(
            "unknown namespace {name:?}: `cachier ls` lists the cached functions of this store"
        ))
    }
}

/// Asks on a terminal unless `yes`; with no terminal, refuses without `--yes`.
fn confirm(yes: bool, question: &str) -> Result<bool, String> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{question} Refusing without a terminal to confirm: pass --yes"
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    if !yes {
        eprintln!("nothing done");
    }
    Ok(yes)
}
