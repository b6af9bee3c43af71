//! `switchboard-sfu`: a room's selective forwarding unit. Each participant sends its audio and
//! video once, on its producer peer connection; the SFU forwards each RTP packet to every other
//! participant on one consumer peer connection per (receiver, sender), never decoding it.
//!
//! - [`config`]: the task's environment, read once.
//! - [`room`]: the room core, sans-IO: participants, their str0m `Rtc`s, who forwards to whom,
//!   the signaling frames to send. Unit tests drive it without sockets.
//! - [`driver`]: the thin loop around it: one UDP socket, the signaling socket (reconnecting),
//!   the next timeout, SIGTERM.
//! - [`batch`]: the driver's datagrams out, many per system call.
//! - [`stun`]: the STUN the driver reads itself (a request's USERNAME, its own binding).
//! - [`testing`]: a str0m test participant (synthetic Opus + VP8, counters), for the tests and
//!   the benchmark.

pub mod batch;
pub mod config;
pub mod driver;
pub mod room;
pub mod signaling;
pub mod stun;
pub mod testing;
