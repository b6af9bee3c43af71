//! Many datagrams with one system call: `sendmmsg(2)`. A forwarded packet becomes one datagram
//! per receiver, all ready at once; sending them together saves a system call each.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::room::Transmit;

/// Datagrams per system call.
const BATCH: usize = 32;

/// Sends every datagram of `transmits`, in order. One the kernel refuses (an unreachable
/// destination) is dropped with a debug line, as a lost packet would be; a full socket buffer
/// waits until it drains.
pub async fn send_all(socket: &UdpSocket, transmits: &[Transmit]) {
    let mut at = 0;
    while at < transmits.len() {
        let chunk = &transmits[at..(at + BATCH).min(transmits.len())];
        match socket
            .async_io(Interest::WRITABLE, || send_batch(socket, chunk))
            .await
        {
            Ok(sent) => at += sent.max(1),
            Err(e) => {
                tracing::debug!(destination = %chunk[0].destination, error = %e, "UDP send failed");
                at += 1;
            }
        }
    }
}

/// One `sendmmsg` of up to [`BATCH`] datagrams: how many the kernel took, or the error of the
/// first (a `WouldBlock` makes [`UdpSocket::async_io`] wait for the socket).
fn send_batch(socket: &UdpSocket, chunk: &[Transmit]) -> io::Result<usize> {
    let chunk = &chunk[..chunk.len().min(BATCH)];
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut messages: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, transmit) in chunk.iter().enumerate() {
        let name_len = write_address(transmit.destination, &mut names[i]);
        iovecs[i] = libc::iovec {
            iov_base: transmit.contents.as_ptr() as *mut libc::c_void,
            iov_len: transmit.contents.len(),
        };
        let header = &mut messages[i].msg_hdr;
        header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        header.msg_namelen = name_len;
        header.msg_iov = &mut iovecs[i];
        header.msg_iovlen = 1;
    }
    // SAFETY: each message points at an address and one buffer that outlive the call (`names`,
    // `iovecs` and `chunk` are borrowed until it returns); the kernel only reads the buffers.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            messages.as_mut_ptr(),
            chunk.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// `address` as a C socket address in `storage`; returns its length.
fn write_address(address: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match address {
        SocketAddr::V4(a) => {
            let c = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), c) };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let c = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than, and aligned for, sockaddr_in6.
            unsafe { std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), c) };
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams to two receivers, more than one batch, each arrives whole and in order.
    #[tokio::test]
    async fn every_datagram_arrives_at_its_destination() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let transmits: Vec<Transmit> = (0..BATCH as u8 + 5)
            .map(|i| Transmit {
                destination: if i % 2 == 0 { to_a } else { to_b },
                contents: vec![i; 100 + usize::from(i)],
            })
            .collect();
        send_all(&sender, &transmits).await;
        let mut buf = [0u8; 2048];
        for (socket, parity) in [(&a, 0), (&b, 1)] {
            for want in transmits
                .iter()
                .filter(|t| t.contents[0] % 2 == parity)
                .map(|t| &t.contents)
            {
                let (n, from) = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    socket.recv_from(&mut buf),
                )
                .await
                .expect("a datagram")
                .unwrap();
                assert_eq!(from, sender.local_addr().unwrap());
                assert_eq!(&buf[..n], want.as_slice());
            }
        }
    }
}
