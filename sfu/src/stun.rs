//! The little of STUN (RFC 8489) the driver reads itself: a binding request's USERNAME (which
//! peer's ICE agent it is for), and the binding the SFU asks a STUN server for (its
//! server-reflexive address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Whether the datagram is a STUN message (first byte 0..=3, the magic cookie).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= 20 && packet[0] < 4 && packet[4..8] == MAGIC
}

fn message_type(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[0], packet[1]])
}

/// The attributes of a STUN message, `(type, value)`, stopping at the first malformed one.
fn attributes(packet: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let declared = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let end = (20 + declared).min(packet.len());
    let mut at = 20;
    std::iter::from_fn(move || {
        if at + 4 > end {
            return None;
        }
        let kind = u16::from_be_bytes([packet[at], packet[at + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        let start = at + 4;
        if start + len > end {
            return None;
        }
        at = start + len.div_ceil(4) * 4;
        Some((kind, &packet[start..start + len]))
    })
}

/// The local ufrag of a binding request: USERNAME is `receiver_ufrag:sender_ufrag`, and the
/// receiver is the SFU's ICE agent of one peer connection.
pub fn request_ufrag(packet: &[u8]) -> Option<&str> {
    if !is_stun(packet) || message_type(packet) != BINDING_REQUEST {
        return None;
    }
    let (_, value) = attributes(packet).find(|(kind, _)| *kind == USERNAME)?;
    let username = std::str::from_utf8(value).ok()?;
    username.split(':').next().filter(|u| !u.is_empty())
}

/// A binding request with this transaction id.
pub fn binding_request(transaction: [u8; 12]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(20);
    packet.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet.extend_from_slice(&MAGIC);
    packet.extend_from_slice(&transaction);
    packet
}

/// The mapped address of a binding success response to `transaction`.
pub fn binding_response(packet: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    if !is_stun(packet)
        || message_type(packet) != BINDING_SUCCESS
        || packet[8..20] != transaction[..]
    {
        return None;
    }
    let mut plain = None;
    for (kind, value) in attributes(packet) {
        match kind {
            XOR_MAPPED_ADDRESS => return address(value, Some((packet, transaction))),
            MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
    }
    plain
}

fn address(value: &[u8], xor: Option<(&[u8], &[u8; 12])>) -> Option<SocketAddr> {
    if value.len() < 8 {
        return None;
    }
    let mut port = u16::from_be_bytes([value[2], value[3]]);
    let mask: Vec<u8> = match xor {
        Some((_, transaction)) => MAGIC.iter().chain(transaction.iter()).copied().collect(),
        None => vec![0; 16],
    };
    if xor.is_some() {
        port ^= u16::from_be_bytes([MAGIC[0], MAGIC[1]]);
    }
    let ip = match value[1] {
        1 => {
            let mut octets = [0u8; 4];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = value[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        2 if value.len() >= 20 => {
            let mut octets = [0u8; 16];
            for (i, o) in octets.iter_mut().enumerate() {
                *o = value[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_attribute(kind: u16, value: &[u8], message: u16) -> Vec<u8> {
        let mut packet = binding_request([7; 12]);
        packet[0..2].copy_from_slice(&message.to_be_bytes());
        let mut attr = kind.to_be_bytes().to_vec();
        attr.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attr.extend_from_slice(value);
        while !attr.len().is_multiple_of(4) {
            attr.push(0);
        }
        packet[2..4].copy_from_slice(&(attr.len() as u16).to_be_bytes());
        packet.extend_from_slice(&attr);
        packet
    }

    #[test]
    fn reads_the_local_ufrag_of_a_binding_request() {
        let packet = with_attribute(USERNAME, b"sfuUfrag:browser", BINDING_REQUEST);
        assert_eq!(request_ufrag(&packet), Some("sfuUfrag"));
        // Not a request, truncated, not STUN at all.
        assert_eq!(
            request_ufrag(&with_attribute(USERNAME, b"a:b", BINDING_SUCCESS)),
            None
        );
        assert_eq!(request_ufrag(&packet[..22]), None);
        assert_eq!(request_ufrag(&[0x80; 40]), None);
        assert_eq!(request_ufrag(&[]), None);
    }

    #[test]
    fn reads_the_xor_mapped_address_of_its_own_transaction() {
        let transaction = [7u8; 12];
        let mapped: SocketAddr = "203.0.113.9:50000".parse().unwrap();
        let mut value = vec![0, 1];
        value.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
        let IpAddr::V4(ip) = mapped.ip() else {
            unreachable!()
        };
        for (i, o) in ip.octets().iter().enumerate() {
            value.push(o ^ MAGIC[i]);
        }
        let packet = with_attribute(XOR_MAPPED_ADDRESS, &value, BINDING_SUCCESS);
        assert_eq!(binding_response(&packet, &transaction), Some(mapped));
        assert_eq!(binding_response(&packet, &[8; 12]), None);
    }
}
