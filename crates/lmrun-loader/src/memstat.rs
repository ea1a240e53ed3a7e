//! Process memory figures that show what a load mode costs: resident anonymous and file-backed
//! memory and locked memory from `/proc/self/status` (Linux), and the peak resident set from
//! `getrusage`. Used by `lmrun load`, the runner's stats and the benchmarks.

/// Memory counters of the current process, in bytes (`None` where the OS does not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    /// Resident set size (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// Resident anonymous memory (`RssAnon`).
    pub rss_anon_bytes: Option<u64>,
    /// Resident file-backed memory (`RssFile`).
    pub rss_file_bytes: Option<u64>,
    /// Locked memory (`VmLck`).
    pub locked_bytes: Option<u64>,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
}

impl ProcessMemory {
    /// Read the counters now.
    pub fn read() -> ProcessMemory {
        #[cfg(target_os = "linux")]
        if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
            return Self::parse_status(&s);
        }
        ProcessMemory {
            peak_rss_bytes: peak_rss_bytes(),
            ..Default::default()
        }
    }

    /// Parse the text of a `/proc/<pid>/status` file.
    pub fn parse_status(s: &str) -> ProcessMemory {
        let field = |name: &str| -> Option<u64> {
            s.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| {
                    let v = v.trim();
                    let num = v.strip_suffix("kB").unwrap_or(v).trim();
                    num.parse::<u64>().ok().map(|k| k * 1024)
                })
        };
        ProcessMemory {
            rss_bytes: field("VmRSS"),
            rss_anon_bytes: field("RssAnon"),
            rss_file_bytes: field("RssFile"),
            locked_bytes: field("VmLck"),
            peak_rss_bytes: field("VmHWM"),
        }
    }
}

/// Peak resident set size of this process in bytes, from `getrusage(RUSAGE_SELF)`.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage fills the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to an rusage struct.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
            return None;
        }
        let v = ru.ru_maxrss as u64;
        // Linux reports KiB, macOS bytes.
        if cfg!(target_os = "macos") {
            Some(v)
        } else {
            Some(v * 1024)
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 512 kB\n\
                 RssFile:\t 256 kB\nVmLck:\t 0 kB\n";
        let m = ProcessMemory::parse_status(s);
        assert_eq!(m.rss_bytes, Some(1024 * 1024));
        assert_eq!(m.rss_anon_bytes, Some(512 * 1024));
        assert_eq!(m.rss_file_bytes, Some(256 * 1024));
        assert_eq!(m.locked_bytes, Some(0));
        assert_eq!(m.peak_rss_bytes, Some(2048 * 1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_status() {
        let m = ProcessMemory::read();
        assert!(m.rss_bytes.unwrap() > 0);
        assert!(peak_rss_bytes().unwrap() >= m.rss_bytes.unwrap() / 2);
    }
}
