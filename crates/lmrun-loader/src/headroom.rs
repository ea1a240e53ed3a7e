//! How much more memory this process can pin before the kernel's OOM killer steps in: the
//! tightest of its memory cgroups' limits (v1 `memory.limit_in_bytes` − `memory.usage_in_bytes`,
//! v2 `memory.max` − `memory.current`, for the group and each ancestor) and the system's
//! `MemAvailable`.
//!
//! Why it exists: `mlock` as root (CAP_IPC_LOCK) is not bounded by RLIMIT_MEMLOCK, and inside a
//! memory cgroup smaller than the model it does not fail with an errno — it faults every page
//! in, the locked pages cannot be reclaimed, and the cgroup's OOM killer kills the process
//! (measured: `mmap-mlock-ignore-errors` was SIGKILLed within a second where plain `mmap`
//! completed). A best-effort lock that kills the process is not best effort, so the mmap loader
//! asks this module first and does not lock what obviously does not fit.

use std::path::{Path, PathBuf};

/// Memory kept free for everything besides the locked range (KV cache, scratch, tokenizer).
pub const LOCK_MARGIN_BYTES: u64 = 64 << 20;

/// Bytes this process may still make resident, or `None` where nothing limits it (or the OS
/// does not say). Linux only; `None` elsewhere.
pub fn memory_headroom() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
        headroom_from(
            cgroup.as_deref(),
            meminfo.as_deref(),
            Path::new("/sys/fs/cgroup"),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// [`memory_headroom`] from the text of `/proc/self/cgroup` and `/proc/meminfo` and the cgroup
/// mount point (parameters so tests can use a fake tree).
pub fn headroom_from(cgroup: Option<&str>, meminfo: Option<&str>, mount: &Path) -> Option<u64> {
    let mut best: Option<u64> = meminfo.and_then(mem_available);
    let mut take = |h: u64| best = Some(best.map_or(h, |b| b.min(h)));
    for line in cgroup.unwrap_or("").lines() {
        // "4:memory:/a/b" (v1) or "0::/a/b" (v2).
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            for dir in ancestors(&mount.join("memory"), rel) {
                if let Some(h) =
                    group_headroom(&dir, "memory.limit_in_bytes", "memory.usage_in_bytes")
                {
                    take(h);
                }
            }
        } else if controllers.is_empty() {
            for dir in ancestors(mount, rel) {
                if let Some(h) = group_headroom(&dir, "memory.max", "memory.current") {
                    take(h);
                }
            }
        }
    }
    best
}

/// `base/rel`, then each parent up to and including `base`.
fn ancestors(base: &Path, rel: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dir = base.join(rel);
    loop {
        out.push(dir.clone());
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            break;
        }
    }
    out
}

/// limit − (usage − inactive file cache) of one group, if it has a finite limit. Inactive file
/// pages (v1 `total_inactive_file`, v2 `inactive_file` in `memory.stat`) are the first the
/// kernel reclaims, so they do not stand in a lock's way.
fn group_headroom(dir: &Path, limit_file: &str, usage_file: &str) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let limit = read(limit_file)?;
    let limit = limit.trim();
    if limit == "max" {
        return None;
    }
    let limit: u64 = limit.parse().ok()?;
    // cgroup v1 writes "unlimited" as a page-rounded i64::MAX.
    if limit >= 1 << 60 {
        return None;
    }
    let usage: u64 = read(usage_file)?.trim().parse().ok()?;
    let stat = read("memory.stat").unwrap_or_default();
    let stat_field = |key: &str| {
        stat.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    // v1 has both the group's own count and the hierarchical total; v2 only the former.
    let inactive_file = stat_field("total_inactive_file")
        .or_else(|| stat_field("inactive_file"))
        .unwrap_or(0);
    Some(limit.saturating_sub(usage.saturating_sub(inactive_file)))
}

fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightest_limit_wins() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path();
        let v1 = m.join("memory/a/b");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "1000000000\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "400000000\n").unwrap();
        // The parent is unlimited (v1's page-rounded i64::MAX).
        std::fs::write(
            m.join("memory/a/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(m.join("memory/a/memory.usage_in_bytes"), "5\n").unwrap();
        let cg = "9:name=systemd:/\n4:memory:/a/b\n0::/\n";
        let mi = "MemTotal: 100 kB\nMemAvailable:    2000000 kB\n";
        assert_eq!(headroom_from(Some(cg), Some(mi), m), Some(600_000_000));
        // Inactive file cache is reclaimable: it does not count against the headroom.
        std::fs::write(
            v1.join("memory.stat"),
            "cache 5\ninactive_file 1\ntotal_inactive_file 100000000\n",
        )
        .unwrap();
        assert_eq!(headroom_from(Some(cg), Some(mi), m), Some(700_000_000));
        // MemAvailable tighter than the group.
        let mi = "MemAvailable: 1000 kB\n";
        assert_eq!(headroom_from(Some(cg), Some(mi), m), Some(1_024_000));
        // No limits anywhere, no meminfo: unknown.
        assert_eq!(headroom_from(Some("0::/\n"), None, m), None);
        assert_eq!(headroom_from(None, None, m), None);
    }

    #[test]
    fn cgroup_v2_max_and_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path();
        let g = m.join("x/y");
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("memory.max"), "max\n").unwrap();
        std::fs::write(g.join("memory.current"), "10\n").unwrap();
        std::fs::write(m.join("x/memory.max"), "300\n").unwrap();
        std::fs::write(m.join("x/memory.current"), "100\n").unwrap();
        assert_eq!(headroom_from(Some("0::/x/y\n"), None, m), Some(200));
        // Usage past the limit saturates at zero; garbage is ignored.
        std::fs::write(m.join("x/memory.current"), "900\n").unwrap();
        assert_eq!(headroom_from(Some("0::/x/y\n"), None, m), Some(0));
        std::fs::write(m.join("x/memory.max"), "lots\n").unwrap();
        assert_eq!(headroom_from(Some("0::/x/y\nbad line\n"), None, m), None);
    }
}
