//! Warnings that must not go unseen. cachier logs through `tracing`, and through `log` where no
//! `tracing` subscriber is installed (tracing's `log` compatibility); a program with neither
//! would see nothing, so the first warning of each kind goes to stderr there.

use tracing::subscriber::NoSubscriber;

/// True when neither a `tracing` subscriber (of this thread or global) nor a `log` logger
/// that takes warnings would show a warning.
pub fn warnings_unheard() -> bool {
    let no_subscriber = tracing::dispatcher::get_default(|dispatch| dispatch.is::<NoSubscriber>());
    no_subscriber && log::max_level() < log::LevelFilter::Warn
}

/// Prints `message` on stderr, as `cachier: <message>`, when [`warnings_unheard`]. Callers
/// log the same warning through `tracing` and call this once per function, not per failure.
#[doc(hidden)]
pub fn eprint_if_unheard(message: std::fmt::Arguments<'_>) {
    if warnings_unheard() {
        eprintln!("cachier: {message}");
    }
}
