//! One actor per file; each is a child somewhere in the supervision tree
//! and owns its piece of state. Open a file by name to find where a thing
//! happens: `embed.rs` turns texts into vectors,
//! `vectors/` holds one actor per vector index and the catalog of indexes,
//! `matrix.rs` does worker search and the playbook loop, `validate.rs`
//! checks outreach; `chat/` answers questions over retrieved records and
//! keeps the replay log; `storage.rs`, `catalog.rs`, `ingest.rs` and `query.rs`
//! are the data plane (objects, dataset manifests, CSV into Lance, SQL);
//! `alarms.rs` sets and clears the service's alarms.

pub mod alarms;
pub mod catalog;
pub mod chat;
pub mod embed;
pub mod ingest;
pub mod matrix;
pub mod query;
pub mod storage;
pub mod validate;
pub mod vectors;
