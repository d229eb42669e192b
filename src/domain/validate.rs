//! Outreach validators: e-mail, SMS and fill proposals, and the PII guard.
//! Pure functions: every problem is reported, not just the first.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::filter::{credential, day, range_of, Expiry};
use crate::domain::workers::DateRange;

pub const MAX_SUBJECT_CHARS: usize = 200;
pub const MAX_EMAIL_BODY_CHARS: usize = 10_000;
pub const MAX_SMS_CHARS: usize = 160;
pub const MAX_FILL_WORKERS: usize = 1000;

/// One problem found: what kind, in which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    pub kind: String,
    pub field: String,
    pub reason: String,
}

impl Problem {
    fn new(kind: &str, field: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: kind.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// `POST /v1/validate` body, by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValidateRequest {
    Email {
        to: String,
        subject: String,
        body: String,
    },
    Sms {
        to: String,
        body: String,
    },
    Fill {
        #[serde(deserialize_with = "crate::domain::de::object")]
        order: FillOrder,
        worker_ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FillOrder {
    pub role: String,
    pub city: String,
    pub state: String,
    #[serde(deserialize_with = "crate::domain::de::integer")]
    #[schema(maximum = 4294967295_u64)]
    pub count: usize,
    /// The assignment's days: each worker must be free for all of them
    /// (`unavailable` otherwise).
    #[serde(default)]
    pub dates: Option<DateRange>,
    /// Certifications each worker must hold, valid through the last day
    /// (today without `dates`): `missing_certification` or
    /// `expired_certification` otherwise.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub certifications: Option<Vec<String>>,
}

/// Certifications an order may require.
pub const MAX_ORDER_CERTIFICATIONS: usize = 50;

/// What the fill validator needs to know of a worker.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerFacts {
    pub role: String,
    pub city: String,
    pub state: String,
    /// As stored: names, or `{name, expires}`.
    pub certifications: Vec<serde_json::Value>,
    pub available_from: Option<String>,
    pub available_to: Option<String>,
    /// As stored: `{from, to}` ranges.
    pub unavailable: Vec<serde_json::Value>,
}

impl WorkerFacts {
    /// What the fill validator reads of a worker's metadata.
    pub fn of(metadata: &serde_json::Value) -> Self {
        let text = |field: &str| {
            metadata
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let list = |field: &str| {
            metadata
                .get(field)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        Self {
            role: text("role").unwrap_or_default(),
            city: text("city").unwrap_or_default(),
            state: text("state").unwrap_or_default(),
            certifications: list("certifications"),
            available_from: text("available_from"),
            available_to: text("available_to"),
            unavailable: list("unavailable"),
        }
    }

    /// Why the worker is not free on every day of `from..=to`, if not.
    fn unavailability(&self, from: NaiveDate, to: NaiveDate) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(start) = self.available_from.as_deref().and_then(day) {
            if start > from {
                reasons.push(format!("can start on {start}, after the first day {from}"));
            }
        }
        if let Some(last) = self.available_to.as_deref().and_then(day) {
            if last < to {
                reasons.push(format!(
                    "is available until {last}, before the last day {to}"
                ));
            }
        }
        for (off_from, off_to) in self.unavailable.iter().filter_map(range_of) {
            if off_from <= to && off_to >= from {
                reasons.push(format!("is unavailable from {off_from} to {off_to}"));
            }
        }
        reasons
    }

    /// The best expiry among the entries of a held certification, its
    /// name compared exactly as the filter language's `valid_any` does;
    /// `None` when not held.
    fn certification(&self, name: &str) -> Option<Expiry> {
        self.certifications
            .iter()
            .filter_map(credential)
            .filter(|(held, _)| *held == name)
            .map(|(_, expiry)| expiry)
            .max()
    }
}

/// The reply: `200 {"valid": true}` or `422 {"valid": false, "errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Problem>,
}

impl Verdict {
    pub fn from_problems(errors: Vec<Problem>) -> Self {
        Self {
            valid: errors.is_empty(),
            errors,
        }
    }
}

pub fn validate_email(to: &str, subject: &str, body: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(reason) = check_address(to) {
        problems.push(Problem::new("invalid_address", "to", reason));
    }
    let subject_fits = check_text(&mut problems, "subject", subject, MAX_SUBJECT_CHARS);
    if subject.contains(['\r', '\n']) {
        problems.push(Problem::new(
            "invalid_subject",
            "subject",
            "a subject must be one line",
        ));
    }
    let body_fits = check_text(&mut problems, "body", body, MAX_EMAIL_BODY_CHARS);
    // A text already too long is not scanned further: it cannot be sent
    // as it is, and scanning a megabyte costs more than saying so.
    for (field, text, fits) in [
        ("subject", subject, subject_fits),
        ("body", body, body_fits),
    ] {
        if fits {
            check_placeholders(&mut problems, field, text);
            check_pii(&mut problems, field, text);
        }
    }
    problems
}

pub fn validate_sms(to: &str, body: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(reason) = check_phone(to) {
        problems.push(Problem::new("invalid_phone", "to", reason));
    }
    if check_text(&mut problems, "body", body, MAX_SMS_CHARS) {
        check_placeholders(&mut problems, "body", body);
        check_pii(&mut problems, "body", body);
    }
    problems
}

/// The checks of a drafted body alone, without a recipient: what a chat
/// answer drafted as an SMS or an e-mail must pass before anyone sends it.
pub fn validate_draft(sms: bool, body: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let max = if sms {
        MAX_SMS_CHARS
    } else {
        MAX_EMAIL_BODY_CHARS
    };
    if check_text(&mut problems, "body", body, max) {
        check_placeholders(&mut problems, "body", body);
        check_pii(&mut problems, "body", body);
    }
    problems
}

/// `lookup` answers what is known of a worker id (`None`: no such worker);
/// `today` is when certifications must be valid if the order has no dates.
pub fn validate_fill(
    order: &FillOrder,
    worker_ids: &[String],
    lookup: impl Fn(&str) -> Option<WorkerFacts>,
    today: NaiveDate,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let window = match order.dates.as_ref().map(DateRange::days) {
        Some(Ok(days)) => Some(days),
        Some(Err(reason)) => {
            problems.push(Problem::new("invalid_dates", "order.dates", reason));
            None
        }
        None => None,
    };
    let required = order.certifications.as_deref().unwrap_or_default();
    let certifications_fine = required.len() <= MAX_ORDER_CERTIFICATIONS
        && required
            .iter()
            .all(|c| !c.trim().is_empty() && c.chars().count() <= 200);
    if !certifications_fine {
        problems.push(Problem::new(
            "invalid_certifications",
            "order.certifications",
            format!("at most {MAX_ORDER_CERTIFICATIONS} names of 1 to 200 characters"),
        ));
    }
    let valid_through = window.map_or(today, |(_, to)| to);
    for (field, value) in [
        ("order.role", &order.role),
        ("order.city", &order.city),
        ("order.state", &order.state),
    ] {
        if value.trim().is_empty() {
            problems.push(Problem::new("missing", field, "must not be empty"));
        }
    }
    if order.count == 0 {
        problems.push(Problem::new(
            "invalid_count",
            "order.count",
            "must be at least 1",
        ));
    }
    if worker_ids.len() != order.count {
        problems.push(Problem::new(
            "count_mismatch",
            "worker_ids",
            format!(
                "the order needs {} workers, the proposal has {}",
                order.count,
                worker_ids.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, id) in worker_ids.iter().enumerate() {
        let field = format!("worker_ids[{i}]");
        if !seen.insert(id.as_str()) {
            problems.push(Problem::new(
                "duplicate_worker",
                &field,
                format!("'{id}' is proposed more than once"),
            ));
            continue;
        }
        let Some(worker) = lookup(id) else {
            problems.push(Problem::new(
                "unknown_worker",
                &field,
                format!("no worker '{id}'"),
            ));
            continue;
        };
        if !same(&worker.role, &order.role) {
            problems.push(Problem::new(
                "role_mismatch",
                &field,
                format!(
                    "'{id}' is a {}, the order is for {}",
                    worker.role, order.role
                ),
            ));
        }
        if !same(&worker.city, &order.city) || !same(&worker.state, &order.state) {
            problems.push(Problem::new(
                "location_mismatch",
                &field,
                format!(
                    "'{id}' is in {}, {}; the order is in {}, {}",
                    worker.city, worker.state, order.city, order.state
                ),
            ));
        }
        if let Some((from, to)) = window {
            for reason in worker.unavailability(from, to) {
                problems.push(Problem::new(
                    "unavailable",
                    &field,
                    format!("'{id}' {reason}"),
                ));
            }
        }
        // An order whose certifications are refused is not checked
        // against them: one problem, not one per worker and name.
        for name in required.iter().filter(|_| certifications_fine) {
            let shown = crate::domain::shown(name, 80);
            match worker.certification(name) {
                None => problems.push(Problem::new(
                    "missing_certification",
                    &field,
                    format!("'{id}' does not hold {shown}"),
                )),
                Some(expiry) if !expiry.covers(valid_through) => {
                    let when = match expiry {
                        Expiry::On(last) => format!("expires on {last}"),
                        _ => "has no readable expiry".to_string(),
                    };
                    problems.push(Problem::new(
                        "expired_certification",
                        &field,
                        format!("'{id}''s {shown} {when}, before {valid_through}"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Presence and length; whether the text is worth scanning further (it
/// is not empty and not too long).
fn check_text(problems: &mut Vec<Problem>, field: &str, text: &str, max: usize) -> bool {
    if text.trim().is_empty() {
        problems.push(Problem::new("missing", field, "must not be empty"));
        return false;
    }
    let chars = text.chars().count();
    if chars > max {
        problems.push(Problem::new(
            "too_long",
            field,
            format!("{chars} characters, at most {max} are allowed"),
        ));
        return false;
    }
    true
}

/// The longest `[UPPER_CASE]` placeholder token.
const MAX_TOKEN_CHARS: usize = 40;

/// Unresolved template placeholders: `{{…}}` and `[UPPER_CASE]` tokens.
fn check_placeholders(problems: &mut Vec<Problem>, field: &str, text: &str) {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                found.push(format!("{{{{{}}}}}", &after[..end]));
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    // `[TOKEN]`: one pass. A token is at most 40 characters, so the `]`
    // is looked for only that far; a `[` without one is passed over (a
    // search to the end for every `[` made a body of `[`s quadratic).
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'[' {
            let window = &bytes[i + 1..bytes.len().min(i + 2 + MAX_TOKEN_CHARS)];
            if let Some(len) = window.iter().position(|&b| b == b']') {
                let inner = &text[i + 1..i + 1 + len];
                let is_token = !inner.is_empty()
                    && inner.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && inner.chars().all(|c| {
                        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == ' '
                    });
                if is_token {
                    found.push(format!("[{inner}]"));
                    i += len + 1;
                }
            }
        }
        i += 1;
    }
    if !found.is_empty() {
        problems.push(Problem::new(
            "placeholder",
            field,
            format!("unresolved template placeholder(s): {}", found.join(", ")),
        ));
    }
}

fn check_pii(problems: &mut Vec<Problem>, field: &str, text: &str) {
    let ssns = find_ssns(text);
    if !ssns.is_empty() {
        problems.push(Problem::new(
            "pii",
            field,
            format!("contains {} SSN-shaped number(s); remove them", ssns.len()),
        ));
    }
}

/// SSN-shaped numbers: `ddd-dd-dddd`, `ddd dd dddd`, or a bare run of exactly
/// nine digits. A candidate counts only when no digit (directly, or across
/// one separator) flanks it, so a nine-digit run inside a longer number, or
/// part of a phone number (`555-123-4567`, `(555) 123-4567`,
/// `+1 555 123 4567`, `5551234567`), is never flagged.
pub fn find_ssns(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let digit =
        |i: isize| i >= 0 && (i as usize) < chars.len() && chars[i as usize].is_ascii_digit();
    let is_sep =
        |i: isize, sep: char| i >= 0 && (i as usize) < chars.len() && chars[i as usize] == sep;
    let mut found = Vec::new();
    let mut i = 0usize;
    while i < chars.len() {
        let start = i as isize;
        if !chars[i].is_ascii_digit() || digit(start - 1) {
            i += 1;
            continue;
        }
        // A digit directly after a separator that follows a digit continues
        // an earlier number (e.g. the 123 of 555-123-4567): not a start.
        let continues = ['-', ' ', '.']
            .iter()
            .any(|&s| is_sep(start - 1, s) && digit(start - 2));
        let run = (i..chars.len())
            .take_while(|&j| chars[j].is_ascii_digit())
            .count();
        if !continues {
            if run == 9 {
                found.push(chars[i..i + 9].iter().collect());
                i += run;
                continue;
            }
            if run == 3 {
                for sep in ['-', ' '] {
                    let shape = [3, 2, 4];
                    let mut j = i;
                    let mut ok = true;
                    for (g, len) in shape.iter().enumerate() {
                        if g > 0 {
                            if !is_sep(j as isize, sep) {
                                ok = false;
                                break;
                            }
                            j += 1;
                        }
                        let group = (j..chars.len())
                            .take_while(|&x| chars[x].is_ascii_digit())
                            .count();
                        if group != *len {
                            ok = false;
                            break;
                        }
                        j += len;
                    }
                    // Nothing numeric may continue after the last group.
                    let trailing = is_sep(j as isize, sep) && digit(j as isize + 1);
                    if ok && !trailing {
                        found.push(chars[i..j].iter().collect());
                        break;
                    }
                }
            }
        }
        i += run;
    }
    found
}

fn check_address(to: &str) -> Result<(), String> {
    let to = to.trim();
    if to.is_empty() {
        return Err("must not be empty".into());
    }
    if to.len() > 254 {
        return Err("longer than 254 characters".into());
    }
    let Some((local, domain)) = to.rsplit_once('@') else {
        return Err(format!("'{to}' has no '@'"));
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    if !local_ok {
        return Err(format!("'{local}' is not a valid mailbox name"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    if !domain_ok {
        return Err(format!("'{domain}' is not a valid domain"));
    }
    Ok(())
}

/// A US phone number in any common form: 10 digits, or 11 starting with 1.
fn check_phone(to: &str) -> Result<(), String> {
    let to = to.trim();
    if to.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(bad) = to
        .chars()
        .find(|c| !(c.is_ascii_digit() || " ()+-.".contains(*c)))
    {
        return Err(format!("unexpected character '{bad}' in a phone number"));
    }
    if to[1..].contains('+') || (to.contains('+') && !to.starts_with('+')) {
        return Err("'+' may only lead the number".into());
    }
    let digits: String = to.chars().filter(char::is_ascii_digit).collect();
    let national = match digits.len() {
        10 => digits.as_str(),
        11 if digits.starts_with('1') => &digits[1..],
        n => {
            return Err(format!(
                "a US phone number has 10 digits (or 11 with the leading 1), got {n}"
            ))
        }
    };
    if national.starts_with('0') || national.starts_with('1') {
        return Err("an area code cannot start with 0 or 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.kind.as_str()).collect()
    }

    /// The PII table: phone numbers in every common form are never flagged;
    /// SSN shapes are; flanking digits decide.
    #[test]
    fn pii_guard_table() {
        let cases: &[(&str, bool)] = &[
            ("Call 555-123-4567", false),
            ("Call (555) 123-4567 today", false),
            ("Call 555.123.4567", false),
            ("Call +1 555 123 4567", false),
            ("Call +1-555-123-4567", false),
            ("Call me at 5551234567", false),
            ("Text 1-555-123-4567 after 5", false),
            ("Order #1234567890123 shipped", false),
            ("SSN 123-45-6789", true),
            ("SSN 123 45 6789", true),
            ("ssn:123456789.", true),
            ("id 123456789", true),
            ("a 9-digit run inside 12345678901 is fine", false),
            ("ten digits 1234567890 are not an SSN", false),
            ("123-45-67890 has too many digits", false),
            ("9123-45-6789 has a digit before", false),
            ("zip 60601, shift 7-3", false),
            ("rate $18.50/hr, 2 shifts", false),
        ];
        for (text, flagged) in cases {
            assert_eq!(
                !find_ssns(text).is_empty(),
                *flagged,
                "{text}: {:?}",
                find_ssns(text)
            );
        }
    }

    #[test]
    fn sms_table() {
        let ok = "Hi Ana, a forklift shift in Chicago starts Monday 7am. Reply YES to confirm.";
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("555-123-4567", ok.to_string(), vec![]),
            ("(555) 123-4567", ok.to_string(), vec![]),
            ("555.123.4567", ok.to_string(), vec![]),
            ("+1 555 123 4567", ok.to_string(), vec![]),
            ("5551234567", ok.to_string(), vec![]),
            ("+15551234567", ok.to_string(), vec![]),
            ("555-1234", ok.to_string(), vec!["invalid_phone"]),
            ("055-123-4567", ok.to_string(), vec!["invalid_phone"]),
            ("555-CALL-NOW", ok.to_string(), vec!["invalid_phone"]),
            ("555-123-4567", "x".repeat(160), vec![]),
            ("555-123-4567", "x".repeat(161), vec!["too_long"]),
            ("555-123-4567", "é".repeat(160), vec![]),
            ("555-123-4567", String::new(), vec!["missing"]),
            (
                "555-123-4567",
                "Your SSN 123-45-6789 is on file".into(),
                vec!["pii"],
            ),
            (
                "555-123-4567",
                "Call 555-123-4567 about the shift".into(),
                vec![],
            ),
            (
                "555-123-4567",
                "Hi [NAME], shift at {{site}}".into(),
                vec!["placeholder"],
            ),
            ("bad", "x".repeat(161), vec!["invalid_phone", "too_long"]),
        ];
        for (to, body, expected) in cases {
            assert_eq!(
                kinds(&validate_sms(to, &body)),
                expected,
                "to={to} body={body}"
            );
        }
    }

    #[test]
    fn email_table() {
        let body = "Hello Ana,\nA CNC Operator role in Dayton, OH pays $24/hr. Call 555-123-4567.";
        let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
            ("ana@example.com", "Shift offer", body, vec![]),
            (
                "ana.lopez+jobs@mail.example.co",
                "Shift offer",
                body,
                vec![],
            ),
            ("ana@", "Shift offer", body, vec!["invalid_address"]),
            (
                "ana.example.com",
                "Shift offer",
                body,
                vec!["invalid_address"],
            ),
            (
                "ana@@example.com",
                "Shift offer",
                body,
                vec!["invalid_address"],
            ),
            ("ana@example", "Shift offer", body, vec!["invalid_address"]),
            (
                ".ana@example.com",
                "Shift offer",
                body,
                vec!["invalid_address"],
            ),
            ("ana@example.com", "", body, vec!["missing"]),
            ("ana@example.com", "Shift offer", "  ", vec!["missing"]),
            (
                "ana@example.com",
                "Shift\r\nBcc: x@y.z",
                body,
                vec!["invalid_subject"],
            ),
            (
                "ana@example.com",
                "Hi {{first_name}}",
                body,
                vec!["placeholder"],
            ),
            (
                "ana@example.com",
                "Shift offer",
                "Dear [NAME], welcome",
                vec!["placeholder"],
            ),
            (
                "ana@example.com",
                "Shift offer",
                "Your SSN 123 45 6789",
                vec!["pii"],
            ),
            (
                "ana@example.com",
                "Shift offer",
                "See [link] and (555) 123-4567",
                vec![],
            ),
            (
                "x",
                "",
                "SSN 123-45-6789 for [NAME]",
                vec!["invalid_address", "missing", "placeholder", "pii"],
            ),
        ];
        for (to, subject, body, expected) in cases {
            assert_eq!(
                kinds(&validate_email(to, subject, body)),
                expected,
                "{to} / {subject} / {body}"
            );
        }
        let long = "x".repeat(MAX_SUBJECT_CHARS + 1);
        assert_eq!(
            kinds(&validate_email("a@b.co", &long, body)),
            vec!["too_long"]
        );
    }

    #[test]
    fn fill_table() {
        let lookup = |id: &str| match id {
            "w1" | "w2" | "w3" => Some(WorkerFacts {
                role: "Forklift Operator".into(),
                city: "Chicago".into(),
                state: "IL".into(),
                ..Default::default()
            }),
            "w4" => Some(WorkerFacts {
                role: "Welder".into(),
                city: "Chicago".into(),
                state: "IL".into(),
                ..Default::default()
            }),
            "w5" => Some(WorkerFacts {
                role: "Forklift Operator".into(),
                city: "Dallas".into(),
                state: "TX".into(),
                ..Default::default()
            }),
            _ => None,
        };
        let order = FillOrder {
            role: "Forklift Operator".into(),
            city: "Chicago".into(),
            state: "IL".into(),
            count: 2,
            dates: None,
            certifications: None,
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
            (ids(&["w1", "w2"]), vec![]),
            (ids(&["w1"]), vec!["count_mismatch"]),
            (ids(&["w1", "w1"]), vec!["duplicate_worker"]),
            (ids(&["w1", "nobody"]), vec!["unknown_worker"]),
            (ids(&["w1", "w4"]), vec!["role_mismatch"]),
            (ids(&["w1", "w5"]), vec!["location_mismatch"]),
            (
                ids(&["w4", "w5", "w9"]),
                vec![
                    "count_mismatch",
                    "role_mismatch",
                    "location_mismatch",
                    "unknown_worker",
                ],
            ),
        ];
        for (workers, expected) in cases {
            assert_eq!(
                kinds(&validate_fill(&order, &workers, lookup, TODAY)),
                expected,
                "{workers:?}"
            );
        }
        let zero = FillOrder {
            count: 0,
            ..order.clone()
        };
        assert_eq!(
            kinds(&validate_fill(&zero, &[], lookup, TODAY)),
            vec!["invalid_count"]
        );
    }

    const TODAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 12, 1) {
        Some(day) => day,
        None => panic!("a valid date"),
    };

    /// Availability and credentials, at each boundary: a day shared with
    /// a day off, the first and last days, an expiry on the last day.
    #[test]
    fn fill_dates_and_certifications_table() {
        let worker = |metadata: serde_json::Value| {
            let mut base = serde_json::json!({
                "role": "CDL Driver", "city": "Joliet", "state": "IL",
                "available_from": "2026-12-07T08:00:00Z",
            });
            base.as_object_mut()
                .unwrap()
                .extend(metadata.as_object().unwrap().clone());
            WorkerFacts::of(&base)
        };
        let order = |from: &str, to: &str, certifications: &[&str]| FillOrder {
            role: "CDL Driver".into(),
            city: "Joliet".into(),
            state: "IL".into(),
            count: 1,
            dates: Some(DateRange {
                from: from.into(),
                to: to.into(),
            }),
            certifications: Some(certifications.iter().map(|c| c.to_string()).collect()),
        };
        let cdl = |expires: &str| serde_json::json!({"certifications": [{"name": "CDL Class A", "expires": expires}]});
        let cases: Vec<(FillOrder, serde_json::Value, Vec<&str>)> = vec![
            // Starts on the first day: fine; the day before is not.
            (
                order("2026-12-07", "2026-12-09", &[]),
                serde_json::json!({}),
                vec![],
            ),
            (
                order("2026-12-06", "2026-12-09", &[]),
                serde_json::json!({}),
                vec!["unavailable"],
            ),
            // Available to the last day inclusive; one day short is not.
            (
                order("2026-12-08", "2026-12-20", &[]),
                serde_json::json!({"available_to": "2026-12-20"}),
                vec![],
            ),
            (
                order("2026-12-08", "2026-12-21", &[]),
                serde_json::json!({"available_to": "2026-12-20"}),
                vec!["unavailable"],
            ),
            // A day off touching the window on either edge, or not.
            (
                order("2026-12-10", "2026-12-12", &[]),
                serde_json::json!({"unavailable": [{"from": "2026-12-12", "to": "2026-12-14"}]}),
                vec!["unavailable"],
            ),
            (
                order("2026-12-10", "2026-12-12", &[]),
                serde_json::json!({"unavailable": [{"from": "2026-12-08", "to": "2026-12-10"}]}),
                vec!["unavailable"],
            ),
            (
                order("2026-12-10", "2026-12-12", &[]),
                serde_json::json!({"unavailable": [{"from": "2026-12-13", "to": "2026-12-14"}]}),
                vec![],
            ),
            // An expiry on the last day still covers it; the day before does not.
            (
                order("2026-12-08", "2026-12-10", &["CDL Class A"]),
                cdl("2026-12-10"),
                vec![],
            ),
            (
                order("2026-12-08", "2026-12-10", &["CDL Class A"]),
                cdl("2026-12-09"),
                vec!["expired_certification"],
            ),
            // The plain form never expires; a missing one is missing, and
            // names compare exactly, as the matrix's filter does.
            (
                order("2026-12-08", "2026-12-10", &["CDL Class A"]),
                serde_json::json!({"certifications": ["CDL Class A"]}),
                vec![],
            ),
            (
                order("2026-12-08", "2026-12-10", &["cdl class a"]),
                serde_json::json!({"certifications": ["CDL Class A"]}),
                vec!["missing_certification"],
            ),
            // A renewal beside the old entry: the best one counts.
            (
                order("2026-12-08", "2026-12-10", &["CDL Class A"]),
                serde_json::json!({"certifications": [{"name": "CDL Class A", "expires": "2026-01-01"}, {"name": "CDL Class A", "expires": "2028-01-01"}]}),
                vec![],
            ),
            (
                order("2026-12-08", "2026-12-10", &["CDL Class A"]),
                serde_json::json!({"certifications": [{"name": "CDL Class A", "expires": "2020-01-01"}, "CDL Class A"]}),
                vec![],
            ),
            // No start day known: free from any day, as the matrix reads it.
            (
                order("2026-12-01", "2026-12-03", &[]),
                serde_json::json!({"available_from": null}),
                vec![],
            ),
            (
                order("2026-12-08", "2026-12-10", &["HazMat Endorsement"]),
                cdl("2027-01-01"),
                vec!["missing_certification"],
            ),
            // A window backwards is the order's problem.
            (
                order("2026-12-10", "2026-12-08", &[]),
                serde_json::json!({}),
                vec!["invalid_dates"],
            ),
        ];
        for (order, metadata, expected) in cases {
            let facts = worker(metadata.clone());
            let problems = validate_fill(&order, &["w".into()], |_| Some(facts.clone()), TODAY);
            assert_eq!(kinds(&problems), expected, "{metadata} {:?}", order.dates);
        }
        // Refused certifications are one problem, not one per worker.
        let mut refused = order("2026-12-08", "2026-12-10", &["", "CDL Class A"]);
        refused.count = 2;
        let facts = worker(serde_json::json!({}));
        let problems = validate_fill(
            &refused,
            &["a".into(), "b".into()],
            |_| Some(facts.clone()),
            TODAY,
        );
        assert_eq!(kinds(&problems), vec!["invalid_certifications"]);
        // Without dates, a certification must be valid today.
        let mut undated = order("2026-12-08", "2026-12-10", &["CDL Class A"]);
        undated.dates = None;
        let facts = worker(cdl("2026-11-30"));
        let problems = validate_fill(&undated, &["w".into()], |_| Some(facts.clone()), TODAY);
        assert_eq!(kinds(&problems), vec!["expired_certification"]);
        assert!(problems[0].reason.contains("2026-11-30"), "{problems:?}");
    }
}
