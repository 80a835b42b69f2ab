//! Keeping the resident set small on a 512 MB machine: glibc's allocator settings, handing
//! freed heap back, and reading the resident set size for `max_rss_kb`.

/// glibc's allocator settings for nib, as `GLIBC_TUNABLES` (the only way to turn the
/// per-thread cache off). Measured under `wrk -c8` with tiny_http's thread per connection:
/// the default per-thread caches (tcache) and arenas held 1.6 MB of heap; one arena without
/// per-thread caches, returning memory above 64 KB, held 0.8 MB at the same throughput.
const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0:glibc.malloc.trim_threshold=65536:glibc.malloc.mmap_threshold=65536";

/// glibc reads its tunables once, at start-up, from the environment; so `nib serve`
/// re-executes itself once with them set, before any thread exists. The PID stays the same
/// (systemd and the tests see one process). A user's own malloc tunables are respected.
pub(crate) fn ensure_allocator_tunables() {
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.") {
        return;
    }
    let value = if current.is_empty() {
        TUNABLES.to_string()
    } else {
        format!("{current}:{TUNABLES}")
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&exe)
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", value)
        .exec();
    // Only reached when exec failed: serving with the default allocator settings is fine.
    eprintln!("nib: re-executing with allocator settings failed: {err}");
}

/// Drops the program's code pages from the resident set once start-up is over. Start-up
/// (parsing config and every post, migrating the database) runs code that serving never
/// runs again, and the kernel faults code in 64 KB at a time around each touched page, so
/// without this the code start-up ran (some 0.8 MB) stays resident. Code pages are
/// never written (the binary has no text relocations), so the kernel reads them back from
/// the file when they run again.
pub(crate) fn drop_startup_code() {
    crate::sys::drop_code_pages();
}

/// Returns free heap to the kernel: after start-up (parsing every post, migrating the
/// database) and after a burst of requests, so the steady state is what serving needs.
/// glibc keeps freed memory inside its heap when live blocks sit above it; `malloc_trim`
/// releases those pages too. (The binary's code pages are [`drop_startup_code`]'s; its
/// writable pages, which a static PIE relocates at start so they differ from the file, are
/// never dropped.)
pub(crate) fn return_free_heap() {
    crate::sys::malloc_trim();
}

/// Resident memory (`VmRSS`) or peak (`VmHWM`) of this process in KB.
pub(crate) fn status_kb(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&text, key)
}

/// Finds `key:   1234 kB` in the text of `/proc/PID/status`.
pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\tnib\nVmHWM:\t    3120 kB\nVmRSS:\t    2876 kB\nThreads:\t5\n";
        let cases = [
            ("VmRSS", Some(2876)),
            ("VmHWM", Some(3120)),
            ("VmSwap", None),
        ];
        for (key, want) in cases {
            assert_eq!(parse_status_kb(text, key), want, "{key}");
        }
    }
}
