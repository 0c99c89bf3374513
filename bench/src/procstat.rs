//! Process figures from /proc: CPU time, RSS, peak RSS; and bytes on disk.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

fn clock_ticks_per_sec() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// CPU time of a process (all its threads), split as /proc/<pid>/stat reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    /// utime: time in the process's own code.
    pub user: Duration,
    /// stime: time in the kernel on its behalf (system calls, and on a kernel without IRQ
    /// time accounting, the softirqs it ran, such as loopback TCP delivery of what it sent).
    pub kernel: Duration,
}

impl CpuTime {
    pub fn total(self) -> Duration {
        self.user + self.kernel
    }

    /// The time spent from `earlier` to `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            kernel: self.kernel.saturating_sub(earlier.kernel),
        }
    }
}

/// utime and stime of a process, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = fields.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    let hz = clock_ticks_per_sec();
    let ticks = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Ok(CpuTime {
        user: ticks(utime),
        kernel: ticks(stime),
    })
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix(key) {
            let v = v.trim_start_matches(':').trim();
            let num = v.split_whitespace().next().unwrap_or("0");
            return Ok(num.parse()?);
        }
    }
    Err(anyhow!("{key} not in /proc/{pid}/status"))
}

/// Current resident set size, bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    Ok(status_kib(pid, "VmRSS")? * 1024)
}

/// Peak resident set size ("high water mark"), bytes.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    Ok(status_kib(pid, "VmHWM")? * 1024)
}

/// Sum of the apparent sizes of all regular files under `dir`, and of their allocated blocks.
pub fn disk_usage(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                apparent += meta.len();
                allocated += meta.blocks() * 512;
            }
        }
    }
    Ok((apparent, allocated))
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit; children inherit it.
/// Returns the new soft limit.
pub fn raise_nofile_limit() -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

/// Sets this process's soft RLIMIT_NOFILE to `soft` (at most the hard limit); returns the
/// previous soft limit. Descriptors already open stay valid.
pub fn set_soft_nofile(soft: u64) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (old, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_splits_user_from_kernel_time() {
        let pid = std::process::id();
        let start = cpu_time(pid).expect("own stat");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x: u64 = 1;
        let spent = loop {
            // Pure computation between reads: the time goes to user mode.
            for i in 0..200_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            let spent = cpu_time(pid).expect("own stat").since(start);
            if spent.total() >= Duration::from_millis(200) {
                break spent;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no CPU time accounted"
            );
        };
        std::hint::black_box(x);
        assert!(
            spent.user > spent.kernel,
            "a computing loop should be mostly user time: {spent:?}"
        );
    }
}
