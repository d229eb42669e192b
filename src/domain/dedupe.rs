//! Possible duplicates among workers: the same person added twice, under
//! an e-mail written in other case, a phone number written otherwise, or a
//! name spelt a little differently in the same city. A hint, never a
//! merge: the add goes through as asked, and its answer names the items
//! that look alike and why.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Two names in one city this similar (Jaro-Winkler over the normalised
/// names) are "near-identical".
pub const NAME_SIMILARITY: f64 = 0.95;

/// Hints one add may answer with.
pub const MAX_HINTS: usize = 100;

/// Why two items look like one person.
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
pub enum DuplicateReason {
    /// The same e-mail, ignoring case, spaces and a `+tag`.
    Email,
    /// The same phone number, ignoring everything but its digits (and a
    /// leading country code 1).
    Phone,
    /// A near-identical name in the same city and state, and no e-mail or
    /// phone that tells them apart.
    Name,
}

/// One possible duplicate: an item of the add, and the item (already in
/// the index, or earlier in the same add) it looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DuplicateHint {
    pub id: String,
    pub looks_like: String,
    pub reason: DuplicateReason,
}

/// What an item is compared by, normalised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The name, lower case, letters and digits only, its words sorted
    /// ("Diaz, Ana" and "ana  diaz" are one name).
    pub name: Option<String>,
    /// `city|state`, lower case.
    pub place: Option<String>,
}

impl Keys {
    /// The keys of a metadata object (`email`, `phone`, `name`, `city`,
    /// `state`); a field missing or not a string gives none.
    pub fn of(metadata: &Map<String, Value>) -> Self {
        let text = |field: &str| metadata.get(field).and_then(Value::as_str);
        Self::from_fields(
            text("email"),
            text("phone"),
            text("name"),
            text("city"),
            text("state"),
        )
    }

    pub fn from_fields(
        email: Option<&str>,
        phone: Option<&str>,
        name: Option<&str>,
        city: Option<&str>,
        state: Option<&str>,
    ) -> Self {
        Self {
            email: email.and_then(normal_email),
            phone: phone.and_then(normal_phone),
            name: name.and_then(normal_name),
            place: city.map(|city| {
                format!(
                    "{}|{}",
                    city.trim().to_lowercase(),
                    state.unwrap_or_default().trim().to_lowercase()
                )
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.name.is_none()
    }

    /// Why `self` and `other` look like one person, if they do: the same
    /// e-mail, the same phone, or a near-identical name in one place with
    /// no e-mail or phone that differs.
    pub fn matches(&self, other: &Keys) -> Option<DuplicateReason> {
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        let differ =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        if same(&self.email, &other.email) {
            return Some(DuplicateReason::Email);
        }
        if same(&self.phone, &other.phone) {
            return Some(DuplicateReason::Phone);
        }
        let told_apart = differ(&self.email, &other.email) || differ(&self.phone, &other.phone);
        match (&self.name, &other.name) {
            (Some(a), Some(b)) if !told_apart && same(&self.place, &other.place) => (a == b
                || strsim::jaro_winkler(a, b) >= NAME_SIMILARITY)
                .then_some(DuplicateReason::Name),
            _ => None,
        }
    }

    /// The block a name is compared within: its place and first letter.
    pub fn name_block(&self) -> Option<String> {
        let (name, place) = (self.name.as_ref()?, self.place.as_ref()?);
        Some(format!("{place}|{}", name.chars().next()?))
    }
}

/// `Ana.Diaz+work@Example.com ` → `ana.diaz@example.com`.
pub fn normal_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let local = local.split('+').next().unwrap_or_default();
    (!local.is_empty() && domain.contains('.')).then(|| format!("{local}@{domain}"))
}

/// `+1 (312) 555-0100` → `3125550100`; fewer than 7 digits is no phone.
pub fn normal_phone(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.strip_prefix('1') {
        Some(rest) if digits.len() == 11 => rest.to_string(),
        _ => digits,
    };
    (digits.len() >= 7).then_some(digits)
}

/// `  Díaz, ANA ` → `ana diaz`: lower case, accents and punctuation gone,
/// words sorted.
pub fn normal_name(name: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    let plain: String = name
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .to_lowercase();
    let mut words: Vec<&str> = plain.split_whitespace().collect();
    words.sort_unstable();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(value: Value) -> Keys {
        Keys::of(value.as_object().unwrap())
    }

    #[test]
    fn emails_phones_and_names_are_compared_as_people_write_them() {
        let ana = keys(
            json!({"name": "Ana Díaz", "email": "Ana.Diaz+work@Example.com",
                               "phone": "+1 (312) 555-0100", "city": "Joliet", "state": "IL"}),
        );
        let same_email = keys(json!({"name": "A. Other", "email": " ana.diaz@example.com"}));
        assert_eq!(ana.matches(&same_email), Some(DuplicateReason::Email));
        let same_phone = keys(json!({"name": "Someone", "phone": "312.555.0100"}));
        assert_eq!(ana.matches(&same_phone), Some(DuplicateReason::Phone));
        let same_name = keys(json!({"name": "diaz, ana", "city": "joliet", "state": "il"}));
        assert_eq!(ana.matches(&same_name), Some(DuplicateReason::Name));
        let typo = keys(json!({"name": "Ana Diaaz", "city": "Joliet", "state": "IL"}));
        assert_eq!(ana.matches(&typo), Some(DuplicateReason::Name));
        // Another city, or contact details that differ: another person.
        let elsewhere = keys(json!({"name": "Ana Diaz", "city": "Gary", "state": "IN"}));
        assert_eq!(ana.matches(&elsewhere), None);
        let other_email = keys(json!({"name": "Ana Diaz", "city": "Joliet", "state": "IL",
                                       "email": "ana.d@other.org"}));
        assert_eq!(ana.matches(&other_email), None);
        let other_person = keys(json!({"name": "Bea Stone", "city": "Joliet", "state": "IL"}));
        assert_eq!(ana.matches(&other_person), None);
        // Nothing to compare by: no hint.
        assert_eq!(keys(json!({})).matches(&keys(json!({}))), None);
        assert_eq!(normal_phone("555-01"), None);
        assert_eq!(normal_email("no-at-sign"), None);
        assert_eq!(normal_name(" , "), None);
    }
}
