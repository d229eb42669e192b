//! Plain types and pure logic, no I/O: what can be unit-tested without a
//! runtime. Actors call into it; it never calls actors.

pub mod analysis;
pub mod auth;
pub mod chat;
pub mod datasets;
pub mod de;
pub mod dedupe;
pub mod embedding;
pub mod filter;
pub mod geo;
pub mod items;
pub mod keyword;
pub mod matrix;
pub mod validate;
pub mod vectors;
pub mod workers;

/// A client's text as an error message shows it: at most `max`
/// characters, control characters escaped.
pub fn shown(text: &str, max: usize) -> String {
    let short: String = text.chars().take(max).collect();
    short.escape_debug().to_string()
}
