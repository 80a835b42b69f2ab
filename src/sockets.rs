//! The process's own TCP connections as the kernel sees them: listed from
//! `/proc/self/fd`, inspected (`TCP_INFO`, `SIOCINQ`, `SIOCOUTQ`), found by the client's
//! address, and shut. Shutting is `shutdown(2)` on a private `dup` of the descriptor whose
//! identity was checked, never `close(2)`: the descriptor belongs to a tiny_http thread,
//! which sees end-of-file, drops the connection and closes its own fd. The wire uses this
//! to end a connection it answered; the guard, to watch and cut them all. Also: connecting
//! to the process's own listening socket, to wake tiny_http's accept thread or its pool.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use crate::sys;

/// Opens a connection to the listening socket at `local` (over loopback when it listens on
/// every address) and closes it at once, sending nothing: tiny_http takes it like any
/// other, on a thread that reads end-of-file and ends it. The connect gives up after 50 ms
/// (a full backlog), so a caller never waits longer.
pub(crate) fn knock(local: SocketAddr) -> std::io::Result<()> {
    let ip = match local.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    TcpStream::connect_timeout(
        &SocketAddr::new(ip, local.port()),
        Duration::from_millis(50),
    )
    .map(drop)
}

const TCP_ESTABLISHED: u8 = 1;

const TCP_CLOSE_WAIT: u8 = 8;

/// What the kernel says about one connected TCP socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    pub fd: i32,
    pub ino: u64,
    pub state: u8,
    /// Bytes received and not yet read by tiny_http.
    pub inq: u32,
    /// Bytes of an answer written and not yet acknowledged by the client.
    pub outq: u32,
    pub last_recv_ms: u32,
    pub last_sent_ms: u32,
    pub bytes_received: u64,
    pub bytes_acked: u64,
}

impl Conn {
    /// Whether the socket still carries a conversation (not closed, not listening).
    pub fn is_open(&self) -> bool {
        matches!(self.state, TCP_ESTABLISHED | TCP_CLOSE_WAIT)
    }
}

/// Inspects one descriptor: `Some` for a TCP socket that is not listening.
pub(crate) fn inspect(fd: i32) -> Option<Conn> {
    let sock = sys::tcp_socket(fd)?;
    if sock.listening {
        return None;
    }
    let info = sys::tcp_info(fd).ok()?;
    // A queue that cannot be read (the socket closed meanwhile) counts as empty, as the
    // state the kernel reported a moment ago says the rest.
    Some(Conn {
        fd,
        ino: sock.ino,
        state: info.state,
        inq: sys::unread_bytes(fd).unwrap_or(0),
        outq: sys::unacked_bytes(fd).unwrap_or(0),
        last_recv_ms: info.last_data_recv_ms,
        last_sent_ms: info.last_data_sent_ms,
        bytes_received: info.bytes_received,
        bytes_acked: info.bytes_acked,
    })
}

/// The descriptor numbers this process has open, from `/proc/self/fd`; an error when the
/// list cannot be read (reading it takes a descriptor, and there may be none to spare).
pub(crate) fn own_fds() -> std::io::Result<impl Iterator<Item = i32>> {
    Ok(std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok()))
}

/// The descriptor and inode of the connection whose peer is `peer`.
pub(crate) fn find_by_peer(peer: std::net::SocketAddr) -> Option<(i32, u64)> {
    for fd in own_fds().ok()? {
        let Some(c) = inspect(fd) else { continue };
        if sys::peer_addr(fd).ok() == Some(peer) {
            return Some((fd, c.ino));
        }
    }
    None
}

/// Every open TCP connection the process holds, one entry per socket (tiny_http holds two
/// descriptors for each: a reader and a writer), leaving out the inodes in `skip`.
pub(crate) fn scan(skip: &HashSet<u64>) -> std::io::Result<Vec<Conn>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for fd in own_fds()? {
        if let Some(c) = inspect(fd)
            && c.is_open()
            && !skip.contains(&c.ino)
            && seen.insert(c.ino)
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// Shuts down the socket behind `fd` if it still is the socket `ino`. The check runs on a
/// private duplicate, which pins the socket: if tiny_http closed `fd` and the number was
/// reused meanwhile, the duplicate shows another inode and nothing is touched. Returns
/// whether the shutdown happened.
pub(crate) fn cut(fd: i32, ino: u64, how: Shutdown) -> bool {
    let Some(dup) = pinned(fd, ino) else {
        return false;
    };
    // A socket the peer has reset already refuses the shutdown (ENOTCONN): it is cut
    // either way, and tiny_http's thread sees the end all the same.
    let _ = sys::shutdown(dup.as_fd(), how);
    true
}

/// A private duplicate of `fd` when it still is the socket `ino` (see [`cut`]). Dropping
/// the duplicate closes only it; the socket stays open through `fd`.
pub(crate) fn pinned(fd: i32, ino: u64) -> Option<OwnedFd> {
    let dup = sys::dup_cloexec(fd).ok()?;
    (sys::inode(dup.as_raw_fd()) == Some(ino)).then_some(dup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_real_sockets_and_cuts_only_the_same_inode() {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(
            inspect(l.as_raw_fd()).is_none(),
            "listeners are not connections"
        );
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let c = inspect(server.as_raw_fd()).expect("a connection");
        assert_eq!(c.state, TCP_ESTABLISHED);
        assert!(!cut(server.as_raw_fd(), c.ino + 1, Shutdown::Both));
        assert!(cut(server.as_raw_fd(), c.ino, Shutdown::Both));
        let mut buf = [0u8; 1];
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "the peer sees the shutdown"
        );
    }
}
