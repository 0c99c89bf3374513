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

/// The fields of /proc/<pid>/stat after the command name, from field 3 (state) on.
fn stat_fields(pid: u32) -> Result<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    Ok(rest.split_whitespace().map(str::to_owned).collect())
}

/// Field `n` (1-based, as proc(5) numbers them; 3 or more) of `fields`.
fn stat_field(fields: &[String], n: usize) -> Result<u64> {
    fields
        .get(n - 3)
        .ok_or_else(|| anyhow!("no field {n} in /proc/<pid>/stat"))?
        .parse()
        .with_context(|| format!("field {n} of /proc/<pid>/stat"))
}

fn ticks(t: u64) -> Duration {
    Duration::from_nanos(t * 1_000_000_000 / clock_ticks_per_sec())
}

/// utime and stime of a process, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Result<CpuTime> {
    let fields = stat_fields(pid)?;
    Ok(CpuTime {
        user: ticks(stat_field(&fields, 14)?),
        kernel: ticks(stat_field(&fields, 15)?),
    })
}

/// CPU time of a process and of its children: the living ones' own time, and the time of
/// those that ended, which the kernel adds to the parent's cutime and cstime once it has
/// waited for them. For a PostgreSQL cluster from its postmaster: every backend (one per
/// connection, ended or not), the WAL writer and the checkpointer.
pub fn tree_cpu_time(root: u32) -> Result<CpuTime> {
    let fields = stat_fields(root)?;
    let mut total = CpuTime {
        user: ticks(stat_field(&fields, 14)? + stat_field(&fields, 16)?),
        kernel: ticks(stat_field(&fields, 15)? + stat_field(&fields, 17)?),
    };
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end between the listing and the read: it is then in cutime/cstime.
        let Ok(child) = stat_fields(pid) else {
            continue;
        };
        if pid != root && stat_field(&child, 4).ok() == Some(u64::from(root)) {
            total.user += ticks(stat_field(&child, 14)?);
            total.kernel += ticks(stat_field(&child, 15)?);
        }
    }
    Ok(total)
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

    #[test]
    fn tree_cpu_time_counts_children_living_and_ended() {
        let me = std::process::id();
        // The children's part: the tree's time less this process's own (other tests' threads
        // burn CPU in this process meanwhile).
        let children = || {
            let tree = tree_cpu_time(me).expect("tree").total();
            tree.saturating_sub(cpu_time(me).expect("own stat").total())
        };
        let burn = "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done";
        let before = children();
        // An ended child: waited for, so in this process's cutime and cstime.
        let ended = std::process::Command::new("sh")
            .args(["-c", burn])
            .status()
            .expect("sh");
        assert!(ended.success());
        let after_ended = children();
        // A living child, read while it runs.
        let mut living = std::process::Command::new("sh")
            .args(["-c", &format!("{burn}; sleep 30")])
            .spawn()
            .expect("sh");
        let child = living.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // Twice the bound below: each figure is read in 10 ms ticks, and this process's own time
        // (other tests' threads burn CPU in it) is read a moment after the tree's.
        while cpu_time(child).expect("child stat").total() < Duration::from_millis(200) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child used no CPU"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let with_living = children();
        let _ = living.kill();
        let _ = living.wait();
        assert!(
            after_ended >= before + Duration::from_millis(100),
            "an ended child's CPU is counted: {after_ended:?} after {before:?}"
        );
        assert!(
            with_living >= after_ended + Duration::from_millis(100),
            "a living child's CPU is counted: {with_living:?} after {after_ended:?}"
        );
    }
}
