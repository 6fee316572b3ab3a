//! What the tool prints: tables for people, JSON for scripts.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachier::store::{EntryInfo, Namespace};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `println!` that ends the process quietly once stdout is closed (`cachier ls | head -3`), as
/// Unix tools do, instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))
    };
}

fn write_line(line: std::fmt::Arguments<'_>) {
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cachier: cannot write the output: {error}");
        std::process::exit(1);
    }
}

/// One function's line in `cachier ls`.
#[derive(Debug, Serialize)]
pub struct NamespaceReport {
    namespace: String,
    entries: u64,
    size_bytes: u64,
    oldest: Option<String>,
    newest: Option<String>,
    being_calculated: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<u64>,
}

impl NamespaceReport {
    /// Summarises `entries`; `stale_after` adds the stale count.
    pub fn of(namespace: &Namespace, entries: &[EntryInfo], stale_after: Option<Duration>) -> Self {
        let completed = || entries.iter().filter(|e| e.completed);
        NamespaceReport {
            namespace: namespace.to_string(),
            entries: entries.len() as u64,
            size_bytes: entries.iter().map(|e| e.size).sum(),
            oldest: completed().map(|e| e.time).min().map(format_utc),
            newest: completed().map(|e| e.time).max().map(format_utc),
            being_calculated: entries.iter().filter(|e| e.being_calculated()).count() as u64,
            stale: stale_after.map(|limit| completed().filter(|e| e.age > limit).count() as u64),
        }
    }
}

#[derive(Serialize)]
struct EntryReport<'a> {
    key: String,
    age_seconds: f64,
    stored_at: String,
    size_bytes: u64,
    completed: bool,
    being_calculated: bool,
    claim_owner: Option<&'a str>,
    /// The preview of the entry's arguments, where the entry carries one.
    arguments: Option<&'a str>,
}

/// Table or JSON output.
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn namespaces(&self, reports: &[NamespaceReport], with_stale: bool) {
        if self.json {
            out!(
                "{}",
                serde_json::to_string_pretty(reports).expect("plain data")
            );
            return;
        }
        if reports.is_empty() {
            out!("no cached functions");
            return;
        }
        let mut rows = vec![vec![
            "NAMESPACE".to_owned(),
            "ENTRIES".into(),
            "SIZE".into(),
            "OLDEST".into(),
            "NEWEST".into(),
            "CALCULATING".into(),
        ]];
        if with_stale {
            rows[0].push("STALE".into());
        }
        for r in reports {
            let mut row = vec![
                r.namespace.clone(),
                r.entries.to_string(),
                size_text(r.size_bytes),
                r.oldest.clone().unwrap_or_else(|| "-".into()),
                r.newest.clone().unwrap_or_else(|| "-".into()),
                r.being_calculated.to_string(),
            ];
            if let Some(stale) = r.stale {
                row.push(stale.to_string());
            }
            rows.push(row);
        }
        print_table(&rows);
    }

    pub fn entries(&self, namespace: &Namespace, entries: &[EntryInfo]) {
        let mut sorted: Vec<&EntryInfo> = entries.iter().collect();
        sorted.sort_by_key(|e| e.age);
        if self.json {
            let reports: Vec<EntryReport<'_>> = sorted
                .iter()
                .map(|e| EntryReport {
                    key: e.key.to_hex(),
                    age_seconds: e.age.as_secs_f64(),
                    stored_at: format_utc(e.time),
                    size_bytes: e.size,
                    completed: e.completed,
                    being_calculated: e.being_calculated(),
                    claim_owner: e.claim_owner(),
                    arguments: e.preview.as_deref(),
                })
                .collect();
            out!(
                "{}",
                serde_json::to_string_pretty(&reports).expect("plain data")
            );
            return;
        }
        if sorted.is_empty() {
            out!("{namespace}: no entries");
            return;
        }
        let mut rows = vec![[
            "KEY",
            "AGE",
            "SIZE",
            "COMPLETED",
            "CALCULATING",
            "CLAIM OWNER",
            "ARGUMENTS",
        ]
        .map(String::from)
        .to_vec()];
        for e in sorted {
            rows.push(vec![
                e.key.to_hex(),
                age_text(e.age),
                size_text(e.size),
                yes_no(e.completed),
                yes_no(e.being_calculated()),
                e.claim_owner().unwrap_or("-").to_owned(),
                // Last: the one column of varying width. Entries stored without a preview
                // (previews off, or written before previews existed) show "-".
                e.preview.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        print_table(&rows);
    }

    /// The outcome of a change.
    pub fn done(&self, message: &str, count: u64) {
        if self.json {
            out!("{}", serde_json::json!({ "done": message, "count": count }));
        } else {
            out!("{message}");
        }
    }
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_owned()
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<w$}", w = widths[c]))
            .collect();
        out!("{}", line.join("  ").trim_end());
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `45s`, `12m`, `3h`, `7d`.
pub fn age_text(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `2026-11-26T14:03:07Z`.
pub fn format_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Progress on a terminal (stderr), nothing when piped: a spinner with `message` and the time
/// taken, so that a listing of many entries shows it is working.
pub fn progress(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// [`progress`] over `len` steps: a bar from here on.
pub fn steps(bar: &ProgressBar, len: u64) {
    bar.set_length(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed} {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_795_701_787)),
            "2026-11-26T14:03:07Z"
        );
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(age_text(Duration::from_secs(45)), "45s");
        assert_eq!(age_text(Duration::from_secs(7 * 86_400)), "7d");
    }
}
