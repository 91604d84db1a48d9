//! Wall-clock time as sluice records it in state files, `/config` and `/status`: unix seconds.

use std::time::SystemTime;

/// `time` as whole seconds since the unix epoch (0 for a time before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, as whole seconds since the unix epoch.
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}
