//! The IO side of aigw: monoio runtimes (one per worker thread), sockets, the HTTP/1.1 front door,
//! forwarding and relaying, the admin port and the built-in mock upstream.
//!
//! # Key parts
//! - [`workers::run`]: start workers, admin and signal handling.
//! - [`server`]: the connection loop and the [`server::Service`] trait (static dispatch).
//! - [`pipeline`]: the gateway service; [`relay`]: upstream exchange and streaming relay; [`whole`]:
//!   a bounded body read whole before its head (to send the settled rate-limit headers).
//! - [`shard`]: per-worker state; [`control`]: config cell, reload, shutdown.

pub mod admin;
pub mod admission;
mod budget;
pub mod bufpool;
pub mod cache;
pub mod conn;
pub mod control;
pub mod failover;
pub mod health;
pub mod inline;
pub mod logsink;
pub mod metrics;
pub mod mock_server;
pub mod peer;
pub mod pipeline;
pub mod record;
pub mod relay;
pub mod resolver;
pub mod runtime;
pub mod server;
pub mod shard;
mod timer;
pub mod tls;
pub mod upstream;
pub mod whole;
pub mod workers;
