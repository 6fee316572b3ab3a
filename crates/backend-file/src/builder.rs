//! [`FileBackendBuilder`]: the cache directory and the layout of a [`FileBackend`].

use std::path::PathBuf;

use crate::FileBackend;

/// Configures a [`FileBackend`].
///
/// ```
/// use cachier_backend_file::FileBackend;
///
/// let dir = tempfile::tempdir().unwrap();
/// let backend = FileBackend::builder()
///     .cache_dir(dir.path())
///     .separate_files(true) // one file per entry, which can be listed and deleted by hand
///     .build();
/// let square = cachier_core::memoize("docs::square", |x: u64| x * x).backend(backend).build()?;
/// assert_eq!(square.call(12), 144);
/// assert!(std::fs::read_dir(dir.path())?.count() > 0); // the store lives in the directory
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct FileBackendBuilder {
    dir: Option<PathBuf>,
    separate_files: bool,
}

impl FileBackendBuilder {
    /// The cache directory (default: cachier's, see `cachier_settings::default_cache_dir`). A
    /// leading `~` is the home directory. Missing directories are created with mode 0700.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// One file per entry instead of one SQLite store per function (cachier's
    /// `separate_files`): entries can be listed and deleted by hand.
    pub fn separate_files(mut self, on: bool) -> Self {
        self.separate_files = on;
        self
    }

    /// The backend. Nothing touches the disk until a function's store is first used.
    pub fn build(self) -> FileBackend {
        let dir = self.dir.unwrap_or_else(cachier_settings::default_cache_dir);
        FileBackend::configured(expand_home(dir), self.separate_files)
    }
}

fn expand_home(dir: PathBuf) -> PathBuf {
    match dir.strip_prefix("~") {
        Ok(rest) => match dirs::home_dir() {
            Some(home) => home.join(rest),
            None => dir,
        },
        Err(_) => dir,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn home_is_expanded() {
        if let Some(home) = dirs::home_dir() {
            assert_eq!(
                FileBackend::new("~/.exparrot").cache_dir(),
                home.join(".exparrot")
            );
        }
        assert_eq!(FileBackend::new("/a/b").cache_dir(), Path::new("/a/b"));
    }
}
