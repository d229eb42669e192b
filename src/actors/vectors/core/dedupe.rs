//! The lookups behind duplicate hints: live items by normalised e-mail and
//! phone, and by name block (place and first letter). Built with the first
//! add that asks (an add to `workers`), then kept up to date by every
//! publish, like the filter lookups.

use super::lookups::Picked;
use super::*;
use crate::domain::dedupe::{DuplicateHint, Keys, MAX_HINTS};

const FIELDS: [&str; 5] = ["email", "phone", "name", "city", "state"];

#[derive(Default)]
pub(super) struct DedupeIndex {
    keys: HashMap<u64, Keys>,
    emails: HashMap<String, HashSet<u64>>,
    phones: HashMap<String, HashSet<u64>>,
    names: HashMap<String, HashSet<u64>>,
}

fn keys_of(metadata: &str) -> Keys {
    let values = Picked::parse(metadata, &FIELDS);
    let text = |i: usize| values[i].as_ref().and_then(Value::as_str);
    Keys::from_fields(text(0), text(1), text(2), text(3), text(4))
}

impl DedupeIndex {
    pub(super) fn add(&mut self, label: u64, metadata: &str) {
        let keys = keys_of(metadata);
        if keys.is_empty() {
            return;
        }
        if let Some(email) = &keys.email {
            self.emails.entry(email.clone()).or_default().insert(label);
        }
        if let Some(phone) = &keys.phone {
            self.phones.entry(phone.clone()).or_default().insert(label);
        }
        if let Some(block) = keys.name_block() {
            self.names.entry(block).or_default().insert(label);
        }
        self.keys.insert(label, keys);
    }

    pub(super) fn remove(&mut self, label: u64) {
        let Some(keys) = self.keys.remove(&label) else {
            return;
        };
        let drop_from = |map: &mut HashMap<String, HashSet<u64>>, key: Option<String>| {
            if let Some(key) = key {
                if let Some(set) = map.get_mut(&key) {
                    set.remove(&label);
                    if set.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        };
        drop_from(&mut self.emails, keys.email.clone());
        drop_from(&mut self.phones, keys.phone.clone());
        drop_from(&mut self.names, keys.name_block());
    }

    /// Labels that may be `keys`'s person (to be checked with
    /// [`Keys::matches`]).
    fn candidates(&self, keys: &Keys) -> HashSet<u64> {
        let mut found = HashSet::new();
        let mut take = |map: &HashMap<String, HashSet<u64>>, key: Option<String>| {
            if let Some(set) = key.and_then(|k| map.get(&k)) {
                found.extend(set.iter().copied());
            }
        };
        take(&self.emails, keys.email.clone());
        take(&self.phones, keys.phone.clone());
        take(&self.names, keys.name_block());
        found
    }
}

impl Core {
    /// Items of `batch` (id and metadata, in order) that look like a live
    /// item with another id, or an earlier item of the batch: the same
    /// e-mail or phone, or a near-identical name in one place (see
    /// [`Keys::matches`]). At most [`MAX_HINTS`].
    pub fn duplicates(&self, batch: &[(String, String)]) -> Vec<DuplicateHint> {
        if self.inner.read().dedupe.is_none() {
            let mut index = DedupeIndex::default();
            {
                let inner = self.inner.read();
                for entry in inner.rows.values() {
                    index.add(entry.seq, &entry.metadata);
                }
            }
            let mut inner = self.inner.write();
            if inner.dedupe.is_none() {
                // Writes published between the read and now: catch up.
                let missing: Vec<(u64, Arc<str>)> = inner
                    .rows
                    .values()
                    .filter(|e| !index.keys.contains_key(&e.seq))
                    .map(|e| (e.seq, e.metadata.clone()))
                    .collect();
                let gone: Vec<u64> = index
                    .keys
                    .keys()
                    .copied()
                    .filter(|seq| !inner.by_label.contains_key(seq))
                    .collect();
                for seq in gone {
                    index.remove(seq);
                }
                for (seq, metadata) in missing {
                    index.add(seq, &metadata);
                }
                inner.dedupe = Some(index);
            }
        }
        let inner = self.inner.read();
        let Some(index) = inner.dedupe.as_ref() else {
            return Vec::new();
        };
        let mut hints = Vec::new();
        let mut earlier: Vec<(&str, Keys)> = Vec::new();
        for (id, metadata) in batch {
            let keys = keys_of(metadata);
            if keys.is_empty() {
                continue;
            }
            let mut found: Vec<(String, crate::domain::dedupe::DuplicateReason)> = index
                .candidates(&keys)
                .into_iter()
                .filter_map(|label| {
                    let other = inner.by_label.get(&label)?;
                    if other == id {
                        return None;
                    }
                    Some((other.clone(), keys.matches(index.keys.get(&label)?)?))
                })
                .collect();
            found.extend(
                earlier
                    .iter()
                    .filter(|(other, _)| *other != id)
                    .filter_map(|(other, theirs)| Some((other.to_string(), keys.matches(theirs)?))),
            );
            found.sort();
            found.dedup_by(|a, b| a.0 == b.0);
            for (looks_like, reason) in found {
                if hints.len() == MAX_HINTS {
                    return hints;
                }
                hints.push(DuplicateHint {
                    id: id.clone(),
                    looks_like,
                    reason,
                });
            }
            earlier.push((id, keys));
        }
        hints
    }
}
