//! Vector indexes: a `vectors` supervisor (one_for_one) with one
//! `index:<name>` actor per index, and the `vector_catalog` actor that
//! creates, lists and drops them.
//!
//! On disk, under `data.dir/vectors/`: `<name>.index.json` (the definition),
//! `<name>.lance` (the truth, see [`store`]), `<name>.faiss` and
//! `<name>.faiss.json` (the derived graph's snapshot, see [`snapshot`]),
//! `<name>.keywords` (the derived keyword index, see [`keyword::stored`]),
//! and `<name>.quarantine/` (torn manifests set aside, see [`store`]).
//! The `vectors` supervisor derives its children from the definitions on
//! every start, so after a process restart (or a restart of the supervisor
//! itself) every index is back.
//!
//! Each index counts its restarts against an intensity of its own: an
//! index that keeps failing (a damaged dataset, a bug its data triggers) is
//! left `failed` after `supervision.index_max_restarts`, and neither its
//! siblings nor the `vectors` supervisor notice, until an operator restarts
//! it (`POST /v1/admin/indexes/{name}/restart`).

pub mod arena;
pub mod catalog;
pub mod core;
mod error;
mod fence;
pub mod hnsw;
pub mod index;
pub mod keyword;
pub mod snapshot;
pub mod store;
mod supervisor;

pub use error::IndexError;
pub use fence::{HotFieldSet, HotFields, IndexFence};
pub use supervisor::{VectorsContext, SUPERVISOR};

#[cfg(test)]
mod tests;
