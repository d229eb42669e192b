//! Bearer tokens and roles: what a token may do, how it is stored (a
//! SHA-256 hash, never the token), how one is made and checked. No I/O.
//!
//! Why SHA-256 and not a password hash: tokens are 256 random bits, not
//! passwords a person chose, so there is nothing to slow a guesser down
//! for, and a per-request argon2 would cost more than the search it
//! guards. The comparison is constant-time all the same.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do; each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = TokenRole)]
pub enum Role {
    /// GETs, searches, embed, validate, SQL.
    Read,
    /// Item writes, playbook records, ingest, object writes, index create.
    Write,
    /// Index drop, faults, admin restarts.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured token: its name (for logs), its role and the SHA-256 of
/// the token, in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

/// Why a configured token entry is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEntryError {
    #[error("token name '{0}' is invalid: use 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'")]
    Name(String),
    #[error("token '{0}': sha256 must be 64 lowercase hex digits (the hash, not the token)")]
    Hash(String),
    #[error("two tokens are named '{0}'")]
    DuplicateName(String),
    #[error("tokens '{0}' and '{1}' have the same hash")]
    DuplicateHash(String, String),
}

/// Checks every entry and that names and hashes are unique.
pub fn validate_entries(entries: &[TokenEntry]) -> Result<(), TokenEntryError> {
    for (i, entry) in entries.iter().enumerate() {
        let name_ok = (1..=64).contains(&entry.name.len())
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(TokenEntryError::Name(entry.name.chars().take(80).collect()));
        }
        let hash_ok = entry.sha256.len() == 64
            && entry
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hash_ok {
            return Err(TokenEntryError::Hash(entry.name.clone()));
        }
        for earlier in &entries[..i] {
            if earlier.name == entry.name {
                return Err(TokenEntryError::DuplicateName(entry.name.clone()));
            }
            if earlier.sha256 == entry.sha256 {
                return Err(TokenEntryError::DuplicateHash(
                    earlier.name.clone(),
                    entry.name.clone(),
                ));
            }
        }
    }
    Ok(())
}

/// The SHA-256 of a token, as stored in the configuration.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The configured tokens, with their hashes decoded, ready to check
/// requests against.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(TokenEntry, [u8; 32])>,
}

impl Tokens {
    /// From validated entries (see [`validate_entries`]).
    pub fn new(entries: &[TokenEntry]) -> Self {
        let entries = entries
            .iter()
            .filter_map(|entry| {
                let bytes = hex::decode(&entry.sha256).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some((entry.clone(), hash))
            })
            .collect();
        Self { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry whose hash is the presented token's. Every entry is
    /// compared, each in constant time, so neither the position of a match
    /// nor how much of a hash matched shows in the timing.
    pub fn check(&self, presented: &str) -> Option<&TokenEntry> {
        let hash = hash_token(presented);
        let mut found = None;
        for (entry, expected) in &self.entries {
            if bool::from(expected.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found
    }
}

/// A fresh token: 256 random bits from the operating system, hex-encoded
/// behind a `lh_` prefix (so it is recognisable in a leaked log).
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("lh_{}", hex::encode(bytes)))
}

/// The token of an `Authorization: Bearer <token>` header value, if the
/// value has that form.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The host name of a `Host` header value (or a configured address):
/// lower case, without its port; IPv6 keeps its brackets.
pub fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 255 {
        return None;
    }
    let name = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || is_port(after.strip_prefix(':')?)) {
            return None;
        }
        format!("[{}]", &rest[..end])
    } else if value.matches(':').count() > 1 {
        // A bare IPv6 address (a configured `server.host`).
        format!("[{value}]")
    } else {
        match value.split_once(':') {
            Some((name, port)) if is_port(port) => name.to_string(),
            Some(_) => return None,
            None => value.to_string(),
        }
    };
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    (valid && !name.is_empty()).then(|| name.to_ascii_lowercase())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:3100").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(host_name("::1").as_deref(), Some("[::1]"));
        assert_eq!(host_name("example.com:x"), None);
        assert_eq!(host_name("a b"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name("[::1]junk"), None);
    }

    fn entry(name: &str, role: Role, token: &str) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            role,
            sha256: hex::encode(hash_token(token)),
        }
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_token_matches_only_its_own_entry() {
        let tokens = Tokens::new(&[
            entry("reader", Role::Read, "lh_one"),
            entry("writer", Role::Write, "lh_two"),
        ]);
        assert_eq!(
            tokens.check("lh_two").map(|e| e.name.as_str()),
            Some("writer")
        );
        assert_eq!(tokens.check("lh_one").map(|e| e.role), Some(Role::Read));
        assert!(tokens.check("lh_three").is_none());
        assert!(tokens.check("").is_none());
    }

    #[test]
    fn new_tokens_are_256_random_bits_and_check_against_their_hash() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        let tokens = Tokens::new(&[entry("fresh", Role::Admin, &a)]);
        assert!(tokens.check(&a).is_some());
        assert!(tokens.check(&b).is_none());
    }

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer("Bearer lh_abc"), Some("lh_abc"));
        assert_eq!(bearer("bearer lh_abc"), Some("lh_abc"));
        assert_eq!(bearer("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
    }

    #[test]
    fn entries_are_validated() {
        let good = entry("ci-1", Role::Read, "x");
        assert!(validate_entries(std::slice::from_ref(&good)).is_ok());
        let mut bad_name = good.clone();
        bad_name.name = "has space".into();
        assert!(matches!(
            validate_entries(&[bad_name]),
            Err(TokenEntryError::Name(_))
        ));
        let mut clear = good.clone();
        clear.sha256 = "lh_not_a_hash".into();
        assert!(matches!(
            validate_entries(&[clear]),
            Err(TokenEntryError::Hash(_))
        ));
        let mut twin = good.clone();
        twin.sha256 = hex::encode(hash_token("y"));
        assert!(matches!(
            validate_entries(&[good.clone(), twin]),
            Err(TokenEntryError::DuplicateName(_))
        ));
        let mut same_hash = good.clone();
        same_hash.name = "other".into();
        assert!(matches!(
            validate_entries(&[good, same_hash]),
            Err(TokenEntryError::DuplicateHash(..))
        ));
    }
}
