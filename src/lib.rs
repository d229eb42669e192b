//! Lakehouse: a self-healing knowledge service for staffing analytics.
//!
//! One process, in which every component is an actor under an Erlang/OTP
//! style supervision tree (ractor). A failed actor is restarted from durable
//! state in milliseconds; callers find it again by name.
//!
//! # Layout
//!
//! - [`codes`]: the error-code table (code, status, meaning): the ground floor.
//! - [`config`]: typed settings, layered loading, validation.
//! - [`telemetry`]: tracing subscriber and the Prometheus registry.
//! - [`startup`]: [`startup::Application`] binds the socket and starts the tree.
//! - [`supervision`]: the OTP-style supervisor (child specs, strategies,
//!   intensity, backoff, ordered shutdown), the status board and the directory.
//! - [`actors`]: one file per actor (`embed`, `matrix`, ...).
//! - [`service`]: the use cases, written once (limits, reader or mailbox,
//!   timeouts, typed errors); both doors call them.
//! - [`http`]: the HTTP door: thin handlers, the front door, the edge actor
//!   and the one error shape.
//! - [`mcp`]: the MCP door: tools over `/mcp` (the use cases in process)
//!   and over stdio (the same requests, sent to a running service).
//! - [`alarms`]: the alarm board and its rules (the `alarms` actor checks).
//! - [`domain`]: plain types and pure logic (the hashing embedder, ...).
//! - [`durability`]: what an acknowledged write survives; the syncing
//!   object store behind `data.durability = "fsync"`.
//! - [`doctor`]: `lakehouse doctor`, checks of what the configuration needs.
//! - [`redact`]: what no answer or log line shows (host paths, forged lines).
//! - [`seed`]: `lakehouse seed`, the synthetic workers corpus loaded through the API.

pub mod actors;
pub mod alarms;
pub mod backup;
pub mod codes;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod durability;
pub mod http;
pub mod mcp;
pub mod redact;
pub mod replay_cli;
pub mod seed;
pub mod service;
pub mod startup;
pub mod supervision;
pub mod telemetry;
