//! What the benchmarks read of `/proc`: a process's CPU time and memory,
//! the whole machine's busy time and load, and the local RabbitMQ broker's
//! process. Linux only; each answers `None` where `/proc` does not.

/// utime + stime of a process, in seconds.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds the whole machine spent busy (all but idle and iowait).
pub fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some(total.saturating_sub(idle) as f64 / 100.0)
}

/// The RabbitMQ broker's process, when it runs on this machine (the
/// `beam.smp` that boots `rabbit`, not a `rabbitmqctl` passing by).
pub fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let needle = b"-s\0rabbit\0boot";
            let boots_rabbit = cmdline.windows(needle.len()).any(|w| w == needle);
            (comm.trim() == "beam.smp" && boots_rabbit).then_some(pid)
        })
}

/// A `VmRSS:`/`VmHWM:` line of `/proc/<pid>/status`, in MiB to a tenth.
pub fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes them.
pub fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let pid = std::process::id();
        assert!(process_cpu(pid).is_some_and(|s| s >= 0.0));
        assert!(memory_mib(pid, "VmRSS:").is_some_and(|m| m > 0.0));
        assert!(machine_busy().is_some_and(|s| s > 0.0));
        assert_eq!(load_average().map(|l| l.split(' ').count()), Some(3));
        assert_eq!(memory_mib(pid, "NoSuchField:"), None);
    }
}
