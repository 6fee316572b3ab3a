//! Times on disk: the machine's clock (UTC), as nanoseconds since the Unix epoch, in the single
//! store's rows and in entry files' headers alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn to_nanos(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(crate) fn from_nanos(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// `older_than` before now, clamped at the epoch.
pub(crate) fn cutoff(older_than: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(UNIX_EPOCH)
}
