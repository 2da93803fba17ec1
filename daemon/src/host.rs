//! This machine, as the records the box writes name it.

/// The kernel's host name; `None` when it cannot be read.
pub fn name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
