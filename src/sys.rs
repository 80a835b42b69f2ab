//! Every call into libc, and every `unsafe` block of the crate, behind safe functions: the
//! socket options and kernel counters the guard reads, descriptors duplicated, moved and
//! made close-on-exec for the handover, signal masks, exec, the inotify watches on the folders of `posts/` and on `pages/`,
//! the kernel's random bytes, rlimits and the allocator. Each block carries its own
//! `// SAFETY:` comment; a call that can fail returns `io::Result` (or says in a comment
//! why its result is ignored), so the rest of the crate decides what a failure means.
//!
//! Some functions act on descriptor *numbers* the caller does not own (the guard looks at
//! tiny_http's sockets by number). That is sound for memory: a number that is closed or
//! reused meanwhile only makes the call fail or look at another file, which is why the
//! guard checks the inode on a private duplicate before it shuts anything down.
//!
//! libc, not rustix: rustix in place of the calls it covers grew the static binary by
//! 5.8 KB and left 29 of the 42 `unsafe` blocks (TCP_INFO, SIOCOUTQ, TCP_DEFER_ACCEPT,
//! madvise, malloc_trim, execve, `pre_exec`, and a `BorrowedFd::borrow_raw` for every
//! descriptor number the guard looks at but does not own).

use std::ffi::{CStr, CString, c_int, c_void};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// `Ok(rc)` for a non-negative return value, else the error in `errno`.
fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `size_of::<T>()` as a `socklen_t`, for socket options.
fn socklen<T>() -> libc::socklen_t {
    std::mem::size_of::<T>() as libc::socklen_t
}

/// The mode and inode of the file behind descriptor number `fd`.
pub(crate) fn fstat(fd: RawFd) -> io::Result<(u32, u64)> {
    // SAFETY: `stat` is plain data, so all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one `stat` into the buffer we own; a bad number yields EBADF.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok((st.st_mode, st.st_ino))
}

/// The inode of the file behind `fd`, `None` when `fd` is not open.
pub(crate) fn inode(fd: RawFd) -> Option<u64> {
    fstat(fd).ok().map(|(_, ino)| ino)
}

/// An int-sized socket option.
fn getsockopt_int(fd: RawFd, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = socklen::<c_int>();
    // SAFETY: an int-sized option into an int-sized buffer whose size we pass.
    check(unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &mut len) })?;
    Ok(v)
}

fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<T>()` bytes from a value we borrow for the call.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast::<c_void>(),
            socklen::<T>(),
        )
    })?;
    Ok(())
}

/// A TCP socket (IPv4 or IPv6) as [`tcp_socket`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpSocket {
    pub ino: u64,
    pub listening: bool,
}

/// `Some` when `fd` is a TCP socket, with its inode and whether it listens.
pub(crate) fn tcp_socket(fd: RawFd) -> Option<TcpSocket> {
    let (mode, ino) = fstat(fd).ok()?;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    if !(domain == libc::AF_INET || domain == libc::AF_INET6)
        || getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()? != libc::SOCK_STREAM
    {
        return None;
    }
    let listening = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).ok()? != 0;
    Some(TcpSocket { ino, listening })
}

/// The fields of the kernel's `TCP_INFO` the guard uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpInfo {
    pub state: u8,
    pub last_data_recv_ms: u32,
    pub last_data_sent_ms: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
}

/// `TCP_INFO` of the socket `fd`.
pub(crate) fn tcp_info(fd: RawFd) -> io::Result<TcpInfo> {
    // SAFETY: `tcp_info` is plain data, so all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = socklen::<libc::tcp_info>();
    // SAFETY: the kernel fills at most `len` bytes of the struct we own (an older kernel
    // fills fewer and leaves the rest zero).
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    })?;
    Ok(TcpInfo {
        state: info.tcpi_state,
        last_data_recv_ms: info.tcpi_last_data_recv,
        last_data_sent_ms: info.tcpi_last_data_sent,
        bytes_received: info.tcpi_bytes_received,
        bytes_acked: info.tcpi_bytes_acked,
    })
}

/// An ioctl that writes one int.
fn ioctl_int(fd: RawFd, request: libc::Ioctl) -> io::Result<u32> {
    let mut v: c_int = 0;
    // SAFETY: `request` is SIOCINQ or SIOCOUTQ, both of which write exactly one int.
    check(unsafe { libc::ioctl(fd, request, &mut v) })?;
    Ok(v.max(0) as u32)
}

/// Bytes received on the socket `fd` and not yet read (`SIOCINQ`).
pub(crate) fn unread_bytes(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, libc::FIONREAD)
}

/// Bytes written to the socket `fd` and not yet acknowledged by the peer (`SIOCOUTQ`).
pub(crate) fn unacked_bytes(fd: RawFd) -> io::Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ)
}

/// The peer address of the socket at descriptor number `fd`, which the caller does not own.
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: the stream only borrows the number for getpeername and is never dropped
    // (ManuallyDrop), so the descriptor is not closed; a stale number makes the call fail.
    let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    s.peer_addr()
}

/// A private close-on-exec duplicate of descriptor number `fd`, which pins the file it
/// refers to for as long as the duplicate lives.
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on any number only creates a descriptor or fails.
    let dup = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `dup` was created just now and nothing else knows it.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// `shutdown(2)` on a socket.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown takes no pointers; the descriptor is borrowed, so it is open.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

/// Sends `buf` on a socket without waiting and without raising SIGPIPE; returns the bytes
/// the kernel took.
pub(crate) fn send_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads into `buf` from `fd` (used for the inotify descriptor, which is no `File`).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Sets or clears close-on-exec on descriptor number `fd`.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD takes no pointers and only reads the descriptor's flags.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: F_SETFD takes no pointers and only changes the descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
}

/// Whether descriptor number `fd` is open.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any number takes no pointers and fails with EBADF when unused.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Makes descriptor number `to` a copy of `from` (close-on-exec cleared), closing what `to`
/// referred to before. Used only for the handover's fixed number, fd 3.
pub(crate) fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: takes no pointers; `to` is overwritten on purpose, and the callers own it
    // (fd 3 is either the listening socket or unused) or run in a child about to exec.
    check(unsafe { libc::dup2(from, to) })?;
    Ok(())
}

/// Moves `listener` to descriptor number `to` when that number is unused; otherwise, or when
/// the move fails, gives it back where it was. Call only while no other thread can open a
/// descriptor, so `to` cannot be taken between the check and the move.
pub(crate) fn move_listener(listener: TcpListener, to: RawFd) -> TcpListener {
    if listener.as_raw_fd() == to || fd_is_open(to) {
        return listener;
    }
    // SAFETY: takes no pointers; `to` is unused (checked above, and no other thread runs).
    let rc = unsafe { libc::dup3(listener.as_raw_fd(), to, libc::O_CLOEXEC) };
    if rc != to {
        return listener;
    }
    drop(listener);
    // SAFETY: dup3 just created `to` for us and nothing else refers to it.
    unsafe { TcpListener::from_raw_fd(to) }
}

/// Takes ownership of the listening socket inherited at descriptor number `fd`.
/// `Err` when `fd` is not a listening TCP socket. Called once, at start-up, for the number
/// systemd or the previous image passed (`LISTEN_FDS`), which nothing else in the process
/// uses.
pub(crate) fn adopt_listener(fd: RawFd) -> io::Result<TcpListener> {
    if !tcp_socket(fd).is_some_and(|s| s.listening) {
        return Err(io::Error::other(format!(
            "fd {fd} is not a listening TCP socket"
        )));
    }
    // SAFETY: the descriptor was handed to this process to own (see above), and it is a
    // listening TCP socket (checked just now).
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Points descriptor number `fd` (tiny_http's duplicate of the listening socket) at a new
/// unbound, unlistened TCP socket, so that an `accept` on it fails with EINVAL. The number
/// stays valid and its owner still closes it; only the socket behind it changes.
pub(crate) fn park(fd: RawFd, ipv4: bool) -> io::Result<()> {
    let domain = if ipv4 { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers and returns a new descriptor or -1.
    let parked = check(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `parked` was created just now and nothing else knows it.
    let parked = unsafe { OwnedFd::from_raw_fd(parked) };
    // SAFETY: takes no pointers; `fd` is overwritten on purpose (see above).
    check(unsafe { libc::dup3(parked.as_raw_fd(), fd, libc::O_CLOEXEC) })?;
    // Dropping `parked` closes our copy; `fd` keeps the socket.
    Ok(())
}

/// Whether a connection waits in the backlog of the listening socket `fd` right now.
pub(crate) fn readable_now(fd: RawFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, and a count of one; a zero timeout never blocks.
    let n = check(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(n == 1 && p.revents & libc::POLLIN != 0)
}

/// Waits at most `timeout_ms` for any of `fds` to be ready for `events` (`POLLIN`,
/// `POLLOUT`, see [`Ready`]); returns, for each, whether it is ready or in error (a
/// closed or reset connection, which its next send reports).
pub(crate) fn poll_ready(fds: &[(RawFd, Ready)], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, r)| libc::pollfd {
            fd,
            events: match r {
                Ready::Read => libc::POLLIN,
                Ready::Write => libc::POLLOUT,
            },
            revents: 0,
        })
        .collect();
    // SAFETY: `set` is a vector of pollfd we own, and its length is the count given; the
    // kernel writes only their `revents`.
    let rc = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout_ms) };
    match check(rc) {
        Ok(_) => Ok(set.iter().map(|p| p.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
    }
}

/// What [`poll_ready`] waits for on a descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ready {
    Read,
    Write,
}

/// Raises the soft limit on open files to the hard limit.
pub(crate) fn raise_nofile_limit() -> io::Result<()> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) })?;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) })?;
    }
    Ok(())
}

/// The signals nib handles and blocks across exec: SIGTERM, SIGINT and SIGHUP.
fn handled_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; sigemptyset initialises it below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset and sigaddset only write the set we own; they fail only for an
    // invalid signal number, and these three are valid, so their results are ignored.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks (or unblocks) SIGTERM, SIGINT and SIGHUP for the calling thread.
pub(crate) fn block_handled_signals(block: bool) -> io::Result<()> {
    let set = handled_signals();
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: reads the set we own; no old mask is asked for (null).
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Replaces the process image with `path`. Returns only when that failed.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: null-terminated arrays of valid C strings, all borrowed for the call. It
    // returns only on failure, always -1, so errno is the whole result.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    io::Error::last_os_error()
}

/// Makes `cmd`'s child receive descriptor number `from` at `to` (close-on-exec cleared)
/// and start with SIGTERM, SIGINT and SIGHUP blocked, so that a signal before its handlers
/// are in place waits for them instead of killing it.
pub(crate) fn pass_fd(cmd: &mut Command, from: RawFd, to: RawFd) {
    // Built here, in the parent: the child may only make async-signal-safe calls.
    let set = handled_signals();
    let child = move || -> io::Result<()> {
        if from != to {
            // dup2 clears close-on-exec on the copy.
            dup2(from, to)?;
        } else {
            // SAFETY: F_SETFD takes no pointers; it clears close-on-exec on our own copy.
            check(unsafe { libc::fcntl(to, libc::F_SETFD, 0) })?;
        }
        // SAFETY: reads the set the closure owns; no old mask is asked for (null).
        check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (dup2, fcntl, sigprocmask) and allocates nothing.
    unsafe {
        cmd.pre_exec(child);
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd's `MONOTONIC_USEC` uses.
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own. It fails only for
    // an unknown clock, and CLOCK_MONOTONIC always exists on Linux, so the result is ignored.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Fills part of `buf` from the kernel's random source (getrandom(2)); returns how much.
pub(crate) fn getrandom(buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The file system type (`f_type` of statfs(2)) of the file system holding `path`.
pub(crate) fn fs_type(path: &CStr) -> io::Result<i64> {
    // SAFETY: `statfs` is plain data, so all zeroes is a valid value.
    let mut info: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string, and one statfs struct we own for the kernel to fill.
    check(unsafe { libc::statfs(path.as_ptr(), &mut info) })?;
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    Ok(info.f_type as i64)
}

/// A new non-blocking, close-on-exec inotify descriptor.
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: takes no pointers and returns a new descriptor or -1.
    let fd = check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    // SAFETY: `fd` was created just now and nothing else knows it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds a watch for `events` on `path` to the inotify descriptor `fd`; returns its watch
/// descriptor, which the events it sends carry.
pub(crate) fn inotify_add_watch(fd: BorrowedFd<'_>, path: &CStr, events: u32) -> io::Result<i32> {
    // SAFETY: a valid C string borrowed for the call, on a descriptor we borrow.
    check(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), events) })
}

/// Hands free memory at the top of glibc's heaps back to the kernel.
pub(crate) fn malloc_trim() {
    // SAFETY: malloc_trim only releases free memory; it takes no pointers. Its result
    // says whether anything was released, which nib has no use for.
    unsafe { libc::malloc_trim(0) };
}

/// The address ranges in `maps` (the text of `/proc/self/maps`) of the binary `exe` that
/// are never written: its code, and the read-only segment at the start of the file
/// (headers, constant data, unwind tables), which is mapped as it is on disk. The
/// read-only mapping further in is RELRO: relocated at start, so it differs from the file
/// and is left out.
pub(crate) fn clean_ranges<'a>(
    maps: &'a str,
    exe: &'a str,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    maps.lines().filter_map(move |line| {
        let mut parts = line.split_whitespace();
        let (range, perms, offset) = (parts.next()?, parts.next()?, parts.next()?);
        let clean = perms == "r-xp" || (perms == "r--p" && offset.bytes().all(|b| b == b'0'));
        if !clean || !line.ends_with(exe) {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        (start < end).then_some((start, end))
    })
}

/// Drops this process's resident code pages (the binary's mappings that are never
/// written); the kernel reads back from the file what runs again.
pub(crate) fn drop_code_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    drop_clean_pages(&maps, &exe.to_string_lossy());
}

/// Drops the resident pages of the ranges `clean` picks out of `/proc/self/maps` (`maps`):
/// private mappings of the binary file `exe` that are never written.
pub(crate) fn drop_clean_pages(maps: &str, exe: &str) {
    for (start, end) in clean_ranges(maps, exe) {
        // SAFETY: a whole private, file-backed mapping of this process whose pages are
        // never written (code and the read-only head of the file), so dropping them loses
        // nothing: the next access maps them from the file again. A failure (a mapping
        // gone meanwhile) leaves the pages resident, which is harmless, so it is ignored.
        unsafe {
            libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Sets a TCP-level int option on the socket `fd`.
pub(crate) fn set_tcp_int(fd: RawFd, name: TcpOption, value: c_int) -> io::Result<()> {
    let name = match name {
        TcpOption::NoDelay => libc::TCP_NODELAY,
        TcpOption::DeferAccept => libc::TCP_DEFER_ACCEPT,
    };
    setsockopt(fd, libc::IPPROTO_TCP, name, &value)
}

/// The TCP options nib sets on its listening socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TcpOption {
    NoDelay,
    DeferAccept,
}

/// Sets `SO_SNDTIMEO` (whole seconds) on the socket `fd`.
pub(crate) fn set_send_timeout(fd: RawFd, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_mappings_of_the_binary_are_clean() {
        let maps = "\
    1000-2000 r--p 00000000 08:01 7 /usr/bin/nib
    2000-5000 r-xp 00001000 08:01 7 /usr/bin/nib
    5000-6000 r--p 00004000 08:01 7 /usr/bin/nib
    6000-7000 rw-p 00005000 08:01 7 /usr/bin/nib
    7000-8000 r-xp 00000000 08:01 9 /usr/lib/other.so
    8000-9000 rw-p 00000000 00:00 0 [heap]
    zz-9000 r-xp 00000000 08:01 7 /usr/bin/nib
    ";
        let got: Vec<_> = clean_ranges(maps, "/usr/bin/nib").collect();
        assert_eq!(got, [(0x1000, 0x2000), (0x2000, 0x5000)]);
    }
    use std::os::fd::AsFd;

    #[test]
    fn a_dup_pins_the_socket_and_shutdown_reaches_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = tcp_socket(l.as_raw_fd()).unwrap();
        assert!(s.listening);
        assert_eq!(inode(l.as_raw_fd()), Some(s.ino));
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let dup = dup_cloexec(server.as_raw_fd()).unwrap();
        assert_eq!(inode(dup.as_raw_fd()), inode(server.as_raw_fd()));
        assert!(!tcp_socket(dup.as_raw_fd()).unwrap().listening);
        assert_eq!(
            peer_addr(server.as_raw_fd()).unwrap(),
            c.local_addr().unwrap()
        );
        shutdown(dup.as_fd(), Shutdown::Both).unwrap();
        assert!(tcp_info(server.as_raw_fd()).is_ok());
        assert_eq!(unread_bytes(server.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn closed_numbers_fail_instead_of_touching_anything() {
        assert!(fstat(-1).is_err());
        assert!(!fd_is_open(-1));
        assert!(dup_cloexec(-1).is_err());
        assert!(tcp_socket(-1).is_none());
    }
}
