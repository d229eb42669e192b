//! The one integration-test binary: everything through HTTP against the
//! real application (one binary keeps link time down; Lance is large).

mod backup;
mod browser;
mod helpers;

mod chat;
mod console;
mod contract;
mod data;
mod deploy;
mod docs;
mod embed;
mod errors;
mod front_door;
mod hostile;
mod layers;
mod lifecycle;
mod matrix;
mod mcp;
mod ollama;
mod ops;
mod recovery;
mod retrieval;
mod supervision;
mod validate;
mod vectors;
