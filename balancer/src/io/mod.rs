//! The I/O layer of the `balancer` binary: it carries bytes between the
//! interfaces, the TUN device and the sans-I/O engine of the library.
//!
//! * [`sys`]: the system calls std and pnet lack (all `unsafe` is here).
//! * [`packet`]: one interface's pnet channel over our own AF_PACKET socket.
//! * [`early_drop`]: the tcx ingress program that spares the node's kernel
//!   the frames the balancer handles (pure encoding; loaded via `sys`).
//! * [`ring`]: TPACKET_V2 receive ring geometry and slot headers (pure).
//! * [`batch`]: recvmmsg/sendmmsg slots and send queues, and the pure
//!   retry/drop policy for a partial batched send.
//! * [`arp`]: real-server MAC resolution state (pure).
//! * [`control`]: the `GET /stats` HTTP endpoint and its client.
//! * [`heartbeat`]: the heartbeat multicast socket on `front`.
//! * [`health`]: the health-check thread (reqwest / TCP connect).
//! * [`tables`]: the thread that builds sh/mh lookup tables off the packet thread.
//! * [`runner`]: the packet loop (one thread, poll(2)).

pub mod arp;
pub mod batch;
pub mod control;
pub mod early_drop;
pub mod health;
pub mod heartbeat;
pub mod packet;
pub mod ring;
pub mod runner;
pub mod sys;
pub mod tables;
