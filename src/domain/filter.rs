//! The filter language of searches: what a coordinator can say about the
//! metadata of the items they want.
//!
//! ```json
//! {"and": [
//!   {"role": "Forklift Operator"},
//!   {"years_experience": {"gte": 3}, "hourly_rate": {"lt": 24}},
//!   {"certifications": {"contains_any": ["CDL-A", "OSHA 30"]}},
//!   {"not": {"available_from": {"gt": "2026-12-07T00:00:00Z"}}}
//! ]}
//! ```
//!
//! - `{"and": [...]}`, `{"or": [...]}`, `{"not": ...}`;
//! - per field: a scalar is shorthand for `eq`; an object of operators
//!   (all must hold): `eq`, `ne`, `in`, `nin` on strings, numbers and
//!   booleans; `gt`, `gte`, `lt`, `lte` on numbers and on RFC 3339 dates
//!   (a string compares only for equality); `contains`, `contains_any`,
//!   `contains_all` on arrays; `exists` (`true`: present and not null);
//!   `geo_radius` (`{"lat", "lon", "miles" | "km"}`) and `geo_bbox`
//!   (`{"top_left": {"lat", "lon"}, "bottom_right": {"lat", "lon"}}`) on a
//!   location `{"lat", "lon"}`, by exact haversine distance; a box whose
//!   left edge lies east of its right one crosses the antimeridian;
//!   `overlaps` (`{"from", "to"}`, days, both included) on a list of
//!   `{"from", "to"}` ranges: some range shares a day with it;
//!   `valid_any` (`{"names": [...], "on": day}`) on a list of credentials,
//!   each a name or `{"name", "expires"}`: one of the names is held and
//!   not expired on that day (a plain name or no `expires` never expires).
//! - `contains`, `contains_any` and `contains_all` also find an object of
//!   the list by its `name` (`{"name": "CDL Class A", "expires": …}`).
//! - A date is RFC 3339 or a full date (`2026-12-07`, midnight UTC).
//! - `ne` and `nin` also match an item without the field (as `not eq`).
//!
//! Parsing is strict: unknown operators, wrong types, empty lists, too many
//! conditions or too deep a nesting fail naming the path inside the filter
//! (`filter.and[1].years_experience.gte`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Nesting of `and` / `or` / `not` beyond this is refused.
pub const MAX_DEPTH: usize = 4;
/// Values in one `in` / `nin` / `contains_any` / `contains_all` list.
pub const MAX_LIST: usize = 100;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Field { field: String, op: Op },
}

/// A condition on one field. Scalars are held as their filter keys (the
/// same canonical form the equality index uses: `5` equals `5.0`).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    Nin(Vec<String>),
    Gt(Bound),
    Gte(Bound),
    Lt(Bound),
    Lte(Bound),
    Contains(String),
    ContainsAny(Vec<String>),
    ContainsAll(Vec<String>),
    Exists(bool),
    /// Within `km` of `center` (great-circle distance).
    GeoRadius {
        center: crate::domain::geo::Point,
        km: f64,
    },
    /// Inside the box, edges included.
    GeoBbox {
        top_left: crate::domain::geo::Point,
        bottom_right: crate::domain::geo::Point,
    },
    /// Some `{from, to}` range of the list shares a day with `from..=to`.
    Overlaps {
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    },
    /// One of `names` (filter keys) is held, not expired on `on`.
    ValidAny {
        names: Vec<String>,
        on: chrono::NaiveDate,
    },
}

/// What an order comparison compares with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Number(f64),
    Date(DateTime<Utc>),
}

/// Why a filter was refused: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FilterError {
    pub path: String,
    pub reason: String,
}

fn refuse(path: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "nin",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "contains_any",
    "contains_all",
    "exists",
    "geo_radius",
    "geo_bbox",
    "overlaps",
    "valid_any",
];

impl Filter {
    /// Parses a filter object; `max_conditions` bounds the field
    /// conditions in it (`limits.max_filter_fields`).
    pub fn parse(value: &Map<String, Value>, max_conditions: usize) -> Result<Self, FilterError> {
        let mut count = 0;
        let filter = parse_object(value, "filter", 0, &mut count)?;
        if count > max_conditions {
            return Err(refuse(
                "filter",
                format!("at most {max_conditions} conditions, got {count}"),
            ));
        }
        Ok(filter)
    }

    /// Whether `metadata` satisfies the filter.
    pub fn matches(&self, metadata: &Value) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(metadata)),
            Filter::Or(any) => any.iter().any(|f| f.matches(metadata)),
            Filter::Not(inner) => !inner.matches(metadata),
            Filter::Field { field, op } => op.matches(metadata.get(field.as_str())),
        }
    }

    /// The `(field, key)` equalities every match must satisfy (the
    /// top-level conjunction's `eq`s): what an index can narrow by before
    /// the rest is checked.
    pub fn required_equalities(&self) -> Vec<(String, String)> {
        match self {
            Filter::Field {
                field,
                op: Op::Eq(key),
            } => vec![(field.clone(), key.clone())],
            Filter::And(all) => all.iter().flat_map(Filter::required_equalities).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the filter is nothing but a conjunction of equalities (the
    /// equalities then say everything).
    pub fn is_equalities_only(&self) -> bool {
        match self {
            Filter::Field { op: Op::Eq(_), .. } => true,
            Filter::And(all) => all.iter().all(Filter::is_equalities_only),
            _ => false,
        }
    }

    /// A stable text of the filter (cache keys).
    pub fn canonical(&self) -> String {
        format!("{self:?}")
    }
}

fn parse_object(
    object: &Map<String, Value>,
    path: &str,
    depth: usize,
    count: &mut usize,
) -> Result<Filter, FilterError> {
    if depth > MAX_DEPTH {
        return Err(refuse(
            path,
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if object.is_empty() {
        return Err(refuse(
            path,
            "an empty filter matches nothing in particular; leave it out",
        ));
    }
    let logical = ["and", "or", "not"];
    if object.keys().any(|k| logical.contains(&k.as_str())) {
        if object.len() != 1 {
            return Err(refuse(
                path,
                "'and', 'or' and 'not' stand alone in their object (wrap the fields in 'and')",
            ));
        }
        let Some((key, value)) = object.iter().next() else {
            return Err(refuse(path, "an empty filter"));
        };
        let here = format!("{path}.{key}");
        return match key.as_str() {
            "not" => match value {
                Value::Object(inner) => Ok(Filter::Not(Box::new(parse_object(
                    inner,
                    &here,
                    depth + 1,
                    count,
                )?))),
                _ => Err(refuse(&here, "takes one filter object")),
            },
            _ => {
                let Value::Array(items) = value else {
                    return Err(refuse(&here, "takes a list of filter objects"));
                };
                if items.is_empty() {
                    return Err(refuse(&here, "takes at least one filter object"));
                }
                let mut parts = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{here}[{i}]");
                    let Value::Object(inner) = item else {
                        return Err(refuse(&at, "must be a filter object"));
                    };
                    parts.push(parse_object(inner, &at, depth + 1, count)?);
                }
                Ok(if key == "and" {
                    Filter::And(parts)
                } else {
                    Filter::Or(parts)
                })
            }
        };
    }
    let mut parts = Vec::new();
    for (field, condition) in object {
        let here = format!("{path}.{field}");
        if field.is_empty() || field.len() > 256 || field.chars().any(char::is_control) {
            return Err(refuse(
                &here,
                "a field name of 1 to 256 printable characters",
            ));
        }
        match condition {
            Value::Object(operators) => {
                if operators.is_empty() {
                    return Err(refuse(&here, "names no operator"));
                }
                for (operator, operand) in operators {
                    let at = format!("{here}.{operator}");
                    *count += 1;
                    parts.push(Filter::Field {
                        field: field.clone(),
                        op: parse_op(operator, operand, &at)?,
                    });
                }
            }
            scalar => {
                *count += 1;
                parts.push(Filter::Field {
                    field: field.clone(),
                    op: Op::Eq(scalar_key(scalar, &here)?),
                });
            }
        }
    }
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return Ok(only);
        }
    }
    Ok(Filter::And(parts))
}

fn scalar_key(value: &Value, path: &str) -> Result<String, FilterError> {
    filter_key(value).ok_or_else(|| {
        refuse(
            path,
            "only a string, a number or a boolean can be matched (use an operator object for the rest)",
        )
    })
}

fn scalar_list(value: &Value, path: &str) -> Result<Vec<String>, FilterError> {
    let Value::Array(items) = value else {
        return Err(refuse(path, "takes a list of strings, numbers or booleans"));
    };
    if items.is_empty() || items.len() > MAX_LIST {
        return Err(refuse(
            path,
            format!("takes 1 to {MAX_LIST} values, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| scalar_key(item, &format!("{path}[{i}]")))
        .collect()
}

fn bound(value: &Value, path: &str) -> Result<Bound, FilterError> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Bound::Number)
            .ok_or_else(|| refuse(path, "not a finite number")),
        Value::String(s) => instant(s).map(Bound::Date).ok_or_else(|| {
            refuse(
                path,
                format!("compares numbers or dates (RFC 3339, e.g. 2026-12-07T00:00:00Z, or 2026-12-07); '{s}' is neither — strings compare only with eq, ne, in, nin"),
            )
        }),
        _ => Err(refuse(path, "compares numbers or RFC 3339 dates")),
    }
}

fn parse_op(operator: &str, operand: &Value, path: &str) -> Result<Op, FilterError> {
    Ok(match operator {
        "eq" => Op::Eq(scalar_key(operand, path)?),
        "ne" => Op::Ne(scalar_key(operand, path)?),
        "in" => Op::In(scalar_list(operand, path)?),
        "nin" => Op::Nin(scalar_list(operand, path)?),
        "gt" => Op::Gt(bound(operand, path)?),
        "gte" => Op::Gte(bound(operand, path)?),
        "lt" => Op::Lt(bound(operand, path)?),
        "lte" => Op::Lte(bound(operand, path)?),
        "contains" => Op::Contains(scalar_key(operand, path)?),
        "contains_any" => Op::ContainsAny(scalar_list(operand, path)?),
        "contains_all" => Op::ContainsAll(scalar_list(operand, path)?),
        "exists" => match operand {
            Value::Bool(b) => Op::Exists(*b),
            _ => return Err(refuse(path, "takes true or false")),
        },
        "geo_radius" => geo_radius(operand, path)?,
        "geo_bbox" => geo_bbox(operand, path)?,
        "overlaps" => overlaps(operand, path)?,
        "valid_any" => valid_any(operand, path)?,
        other => {
            return Err(refuse(
                path,
                format!(
                    "unknown operator '{other}'; known: {}",
                    OPERATORS.join(", ")
                ),
            ))
        }
    })
}

/// `{"lat", "lon", "miles" | "km"}`.
fn geo_radius(operand: &Value, path: &str) -> Result<Op, FilterError> {
    use crate::domain::geo::{radius_km, Point};
    let Value::Object(object) = operand else {
        return Err(refuse(
            path,
            "takes {\"lat\", \"lon\", \"miles\" or \"km\"}",
        ));
    };
    if let Some(other) = object
        .keys()
        .find(|k| !["lat", "lon", "miles", "km"].contains(&k.as_str()))
    {
        return Err(refuse(
            path,
            format!("unknown key '{other}'; known: lat, lon, miles, km"),
        ));
    }
    let number = |key: &str| -> Result<Option<f64>, FilterError> {
        match object.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| refuse(&format!("{path}.{key}"), "must be a number")),
        }
    };
    let (Some(lat), Some(lon)) = (number("lat")?, number("lon")?) else {
        return Err(refuse(path, "needs the centre's lat and lon"));
    };
    let center = Point::new(lat, lon).map_err(|reason| refuse(path, reason))?;
    let km = radius_km(number("miles")?, number("km")?).map_err(|reason| refuse(path, reason))?;
    Ok(Op::GeoRadius { center, km })
}

/// An RFC 3339 instant, or a full date (`2026-12-07`) at midnight UTC.
pub fn instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    full_date(text).map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// The day of an RFC 3339 instant (in UTC) or a full date.
pub fn day(text: &str) -> Option<chrono::NaiveDate> {
    full_date(text).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|instant| instant.with_timezone(&Utc).date_naive())
    })
}

/// A full date of RFC 3339 (`2026-12-07`: four-digit year, two-digit
/// month and day), as JSON Schema's `date` format reads it; chrono's `%m`
/// and `%d` alone would also take `2026-1-7`.
pub fn full_date(text: &str) -> Option<chrono::NaiveDate> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10);
    shaped
        .then(|| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

/// An operand's object, with only the `known` keys.
fn operand_object<'a>(
    operand: &'a Value,
    path: &str,
    shape: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, FilterError> {
    let Value::Object(object) = operand else {
        return Err(refuse(path, format!("takes {shape}")));
    };
    if let Some(other) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(refuse(
            path,
            format!("unknown key '{other}'; known: {}", known.join(", ")),
        ));
    }
    Ok(object)
}

fn operand_day(
    object: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<chrono::NaiveDate, FilterError> {
    let here = format!("{path}.{key}");
    match object.get(key) {
        Some(Value::String(text)) => day(text).ok_or_else(|| {
            refuse(
                &here,
                "a date (2026-12-07 or RFC 3339) this service can compare",
            )
        }),
        Some(_) => Err(refuse(&here, "a date (2026-12-07 or RFC 3339)")),
        None => Err(refuse(&here, "is required")),
    }
}

/// `{"from": day, "to": day}`, `from` not after `to`.
fn overlaps(operand: &Value, path: &str) -> Result<Op, FilterError> {
    let object = operand_object(operand, path, "{\"from\", \"to\"}", &["from", "to"])?;
    let (from, to) = (
        operand_day(object, "from", path)?,
        operand_day(object, "to", path)?,
    );
    if from > to {
        return Err(refuse(
            path,
            format!("'from' ({from}) is after 'to' ({to})"),
        ));
    }
    Ok(Op::Overlaps { from, to })
}

/// `{"names": [...], "on": day}`.
fn valid_any(operand: &Value, path: &str) -> Result<Op, FilterError> {
    let object = operand_object(
        operand,
        path,
        "{\"names\": [...], \"on\": day}",
        &["names", "on"],
    )?;
    let names = scalar_list(
        object
            .get("names")
            .ok_or_else(|| refuse(&format!("{path}.names"), "is required"))?,
        &format!("{path}.names"),
    )?;
    Ok(Op::ValidAny {
        names,
        on: operand_day(object, "on", path)?,
    })
}

/// An element of a list as `contains` reads it: a scalar, or an object's
/// `name`.
fn element_key(element: &Value) -> Option<String> {
    match element {
        Value::Object(object) => object.get("name").and_then(filter_key),
        scalar => filter_key(scalar),
    }
}

/// A `{from, to}` range's days, both included; `None` if it is not one.
pub fn range_of(element: &Value) -> Option<(chrono::NaiveDate, chrono::NaiveDate)> {
    let from = day(element.get("from")?.as_str()?)?;
    let to = day(element.get("to")?.as_str()?)?;
    Some((from, to))
}

/// Until when a credential is valid. Ordered worst to best, so the best
/// of several entries is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    /// An `expires` that is not a date: valid on no day.
    Unreadable,
    /// Valid through this day.
    On(chrono::NaiveDate),
    /// A plain name, or no or a null `expires`.
    Never,
}

impl Expiry {
    /// Whether it is still valid on `day`.
    pub fn covers(self, day: chrono::NaiveDate) -> bool {
        match self {
            Expiry::Unreadable => false,
            Expiry::On(last) => last >= day,
            Expiry::Never => true,
        }
    }
}

/// A credential of a list, a name or `{"name", "expires"}`: its name and
/// expiry (`None` for anything else). The one reading of the shape that
/// `valid_any`, the fill validator and the write check of `workers` share.
pub fn credential(element: &Value) -> Option<(&str, Expiry)> {
    match element {
        Value::String(name) => Some((name, Expiry::Never)),
        Value::Object(object) => {
            let name = object.get("name")?.as_str()?;
            let expiry = match object.get("expires") {
                None | Some(Value::Null) => Expiry::Never,
                Some(Value::String(text)) => day(text).map_or(Expiry::Unreadable, Expiry::On),
                Some(_) => Expiry::Unreadable,
            };
            Some((name, expiry))
        }
        _ => None,
    }
}

/// Whether a credential is one of `names` (filter keys) and not expired
/// on `on`.
fn credential_valid(element: &Value, names: &[String], on: chrono::NaiveDate) -> bool {
    credential(element).is_some_and(|(name, expiry)| {
        expiry.covers(on) && names.iter().any(|key| key.strip_prefix("s:") == Some(name))
    })
}

/// `{"top_left": {"lat", "lon"}, "bottom_right": {"lat", "lon"}}`.
fn geo_bbox(operand: &Value, path: &str) -> Result<Op, FilterError> {
    use crate::domain::geo::Point;
    let Value::Object(object) = operand else {
        return Err(refuse(
            path,
            "takes {\"top_left\": {\"lat\", \"lon\"}, \"bottom_right\": {\"lat\", \"lon\"}}",
        ));
    };
    if let Some(other) = object
        .keys()
        .find(|k| *k != "top_left" && *k != "bottom_right")
    {
        return Err(refuse(
            path,
            format!("unknown key '{other}'; known: top_left, bottom_right"),
        ));
    }
    let corner = |key: &str| {
        let here = format!("{path}.{key}");
        let value = object
            .get(key)
            .ok_or_else(|| refuse(&here, "is required"))?;
        Point::parse(value).map_err(|reason| refuse(&here, reason))
    };
    let (top_left, bottom_right) = (corner("top_left")?, corner("bottom_right")?);
    if top_left.lat < bottom_right.lat {
        return Err(refuse(
            path,
            "top_left's lat must be at least bottom_right's",
        ));
    }
    Ok(Op::GeoBbox {
        top_left,
        bottom_right,
    })
}

impl Op {
    fn matches(&self, value: Option<&Value>) -> bool {
        let key = || value.and_then(filter_key);
        let elements = || -> Vec<String> {
            match value {
                Some(Value::Array(items)) => items.iter().filter_map(element_key).collect(),
                _ => Vec::new(),
            }
        };
        match self {
            Op::Eq(want) => key().as_ref() == Some(want),
            Op::Ne(want) => key().as_ref() != Some(want),
            Op::In(set) => key().is_some_and(|k| set.contains(&k)),
            Op::Nin(set) => !key().is_some_and(|k| set.contains(&k)),
            Op::Gt(b) => compare(value, b).is_some_and(|o| o.is_gt()),
            Op::Gte(b) => compare(value, b).is_some_and(|o| o.is_ge()),
            Op::Lt(b) => compare(value, b).is_some_and(|o| o.is_lt()),
            Op::Lte(b) => compare(value, b).is_some_and(|o| o.is_le()),
            Op::Contains(want) => elements().contains(want),
            Op::ContainsAny(set) => {
                let have = elements();
                set.iter().any(|w| have.contains(w))
            }
            Op::ContainsAll(set) => {
                let have = elements();
                set.iter().all(|w| have.contains(w))
            }
            Op::Exists(want) => value.is_some_and(|v| !v.is_null()) == *want,
            Op::GeoRadius { center, km } => crate::domain::geo::Point::of(value)
                .is_some_and(|point| point.distance_km(center) <= *km),
            Op::GeoBbox {
                top_left,
                bottom_right,
            } => crate::domain::geo::Point::of(value).is_some_and(|p| {
                let lat = (bottom_right.lat..=top_left.lat).contains(&p.lat);
                let lon = if top_left.lon <= bottom_right.lon {
                    (top_left.lon..=bottom_right.lon).contains(&p.lon)
                } else {
                    // Across the antimeridian.
                    p.lon >= top_left.lon || p.lon <= bottom_right.lon
                };
                lat && lon
            }),
            Op::Overlaps { from, to } => match value {
                Some(Value::Array(ranges)) => ranges
                    .iter()
                    .filter_map(range_of)
                    .any(|(start, end)| start <= *to && end >= *from),
                _ => false,
            },
            Op::ValidAny { names, on } => match value {
                Some(Value::Array(held)) => held
                    .iter()
                    .any(|element| credential_valid(element, names, *on)),
                _ => false,
            },
        }
    }
}

/// The value against the bound: numbers with numbers, dates with dates;
/// anything else does not compare (and so does not match).
fn compare(value: Option<&Value>, bound: &Bound) -> Option<std::cmp::Ordering> {
    match (value?, bound) {
        (Value::Number(n), Bound::Number(b)) => n.as_f64()?.partial_cmp(b),
        (Value::String(s), Bound::Date(b)) => Some(instant(s)?.cmp(b)),
        _ => None,
    }
}

/// The key under which a scalar metadata value is indexed for filters:
/// strings as themselves (prefixed), numbers canonically (5 == 5.0),
/// booleans as words. Objects, arrays and null are not indexed.
pub fn filter_key(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(format!("s:{s}")),
        Value::Bool(b) => Some(format!("b:{b}")),
        Value::Number(n) => {
            let f = n.as_f64()?;
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Some(format!("n:{}", f as i64))
            } else {
                Some(format!("n:{f}"))
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The fields at a filter's top level (its logical operators left out).
pub fn top_level_fields(filter: &Map<String, Value>) -> impl Iterator<Item = &String> {
    filter
        .keys()
        .filter(|k| !["and", "or", "not"].contains(&k.as_str()))
}

/// The fields a filter names: those at its top level and the equalities in
/// its `and`s (each of those gets a lookup in an index).
pub fn named_fields(
    filter: &Map<String, Value>,
    parsed: &Filter,
) -> std::collections::BTreeSet<String> {
    top_level_fields(filter)
        .cloned()
        .chain(
            parsed
                .required_equalities()
                .into_iter()
                .map(|(field, _)| field),
        )
        .collect()
}

/// Parses a search filter into the equalities the field lookups answer
/// and the rest.
pub fn prepare(filter: Option<Map<String, Value>>) -> Result<PreparedFilter, FilterError> {
    let Some(filter) = filter else {
        return Ok(PreparedFilter::default());
    };
    Ok(PreparedFilter::of(Filter::parse(
        &filter,
        MAX_FILTER_CONDITIONS,
    )?))
}

/// Conditions in one filter, whatever its nesting (the HTTP edge also caps
/// its top-level fields at `limits.max_filter_fields`).
pub const MAX_FILTER_CONDITIONS: usize = 64;

/// A filter ready for an index: the equalities every match satisfies
/// (answered from the per-field lookups), and the rest, checked on each
/// remaining item.
#[derive(Debug, Clone, Default)]
pub struct PreparedFilter {
    pub equalities: Vec<(String, String)>,
    /// `None` when the equalities say everything.
    pub predicate: Option<std::sync::Arc<Filter>>,
}

impl PreparedFilter {
    /// A parsed filter, split into its equalities and the rest.
    pub fn of(parsed: Filter) -> Self {
        Self {
            equalities: parsed.required_equalities(),
            predicate: (!parsed.is_equalities_only()).then(|| std::sync::Arc::new(parsed)),
        }
    }

    /// Whether it keeps every item.
    pub fn is_empty(&self) -> bool {
        self.equalities.is_empty() && self.predicate.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Filter, FilterError> {
        Filter::parse(value.as_object().unwrap(), 16)
    }

    fn matches(filter: Value, item: Value) -> bool {
        parse(filter).unwrap().matches(&item)
    }

    #[test]
    fn every_operator_means_what_it_says() {
        let worker = json!({
            "role": "Forklift Operator", "years": 5, "rate": 21.5, "cdl": true,
            "certs": ["OSHA 10", "CDL-A"], "available": "2026-12-03T00:00:00Z", "note": null,
            "location": {"lat": 41.5250, "lon": -88.0817},
            "last_day": "2027-03-31",
            "off": [{"from": "2026-12-24", "to": "2026-12-26"}, {"from": "bad", "to": "2027-01-01"}],
            "licences": ["Forklift", {"name": "CDL Class A", "expires": "2026-12-18"},
                         {"name": "HazMat", "expires": null}, {"name": "Old", "expires": 5}],
        });
        let table = [
            // A full date is its midnight UTC, on either side.
            (json!({"last_day": {"gte": "2027-03-31"}}), true),
            (json!({"last_day": {"gt": "2027-03-31"}}), false),
            (json!({"last_day": {"lt": "2027-03-31T00:00:01Z"}}), true),
            (json!({"available": {"lt": "2026-12-03"}}), false),
            // Ranges share a day when either end touches.
            (
                json!({"off": {"overlaps": {"from": "2026-12-20", "to": "2026-12-24"}}}),
                true,
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-12-26", "to": "2026-12-30"}}}),
                true,
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-12-27", "to": "2026-12-31"}}}),
                false,
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-12-20", "to": "2026-12-23T23:59:59Z"}}}),
                false,
            ),
            (
                json!({"role": {"overlaps": {"from": "2026-12-20", "to": "2026-12-24"}}}),
                false,
            ),
            // An object of a list is found by its name.
            (json!({"licences": {"contains": "CDL Class A"}}), true),
            (
                json!({"licences": {"contains_all": ["Forklift", "HazMat"]}}),
                true,
            ),
            // Valid: the plain form and a null expiry never expire; an
            // expiry on the day still counts; a non-date one never does.
            (
                json!({"licences": {"valid_any": {"names": ["CDL Class A"], "on": "2026-12-18"}}}),
                true,
            ),
            (
                json!({"licences": {"valid_any": {"names": ["CDL Class A"], "on": "2026-12-19"}}}),
                false,
            ),
            (
                json!({"licences": {"valid_any": {"names": ["Forklift"], "on": "9999-12-31"}}}),
                true,
            ),
            (
                json!({"licences": {"valid_any": {"names": ["HazMat"], "on": "2030-01-01"}}}),
                true,
            ),
            (
                json!({"licences": {"valid_any": {"names": ["Old"], "on": "2000-01-01"}}}),
                false,
            ),
            (
                json!({"licences": {"valid_any": {"names": ["Nope", "CDL Class A"], "on": "2026-12-01"}}}),
                true,
            ),
            (json!({"role": "Forklift Operator"}), true),
            (json!({"years": 5.0}), true),
            (json!({"role": {"eq": "Welder"}}), false),
            (json!({"role": {"ne": "Welder"}}), true),
            (json!({"missing": {"ne": "x"}}), true),
            (
                json!({"role": {"in": ["Welder", "Forklift Operator"]}}),
                true,
            ),
            (
                json!({"role": {"nin": ["Welder", "Forklift Operator"]}}),
                false,
            ),
            (json!({"years": {"gt": 5}}), false),
            (json!({"years": {"gte": 5}}), true),
            (json!({"rate": {"lt": 24}}), true),
            (json!({"rate": {"lte": 21}}), false),
            (json!({"available": {"lte": "2026-12-07T00:00:00Z"}}), true),
            (
                json!({"available": {"gt": "2026-12-07T00:00:00+01:00"}}),
                false,
            ),
            (json!({"role": {"gt": 3}}), false),
            (json!({"certs": {"contains": "CDL-A"}}), true),
            (
                json!({"certs": {"contains_any": ["OSHA 30", "CDL-A"]}}),
                true,
            ),
            (
                json!({"certs": {"contains_all": ["OSHA 30", "CDL-A"]}}),
                false,
            ),
            (json!({"note": {"exists": true}}), false),
            (json!({"note": {"exists": false}}), true),
            (json!({"cdl": {"exists": true}}), true),
            (json!({"years": {"gte": 3, "lte": 4}}), false),
            (json!({"or": [{"years": {"lt": 1}}, {"cdl": true}]}), true),
            (json!({"not": {"role": "Forklift Operator"}}), false),
            // Joliet is ~35 miles from Chicago's loop.
            (
                json!({"location": {"geo_radius": {"lat": 41.8781, "lon": -87.6298, "miles": 40}}}),
                true,
            ),
            (
                json!({"location": {"geo_radius": {"lat": 41.8781, "lon": -87.6298, "miles": 30}}}),
                false,
            ),
            (
                json!({"location": {"geo_radius": {"lat": 41.8781, "lon": -87.6298, "km": 60}}}),
                true,
            ),
            (
                json!({"role": {"geo_radius": {"lat": 41.5, "lon": -88.0, "miles": 100}}}),
                false,
            ),
            (
                json!({"location": {"geo_bbox": {"top_left": {"lat": 42, "lon": -89}, "bottom_right": {"lat": 41, "lon": -87}}}}),
                true,
            ),
            (
                json!({"location": {"geo_bbox": {"top_left": {"lat": 42, "lon": -87.9}, "bottom_right": {"lat": 41, "lon": -87}}}}),
                false,
            ),
            // A box across the antimeridian holds neither Joliet...
            (
                json!({"location": {"geo_bbox": {"top_left": {"lat": 60, "lon": 170}, "bottom_right": {"lat": 0, "lon": -170}}}}),
                false,
            ),
            // ...nor does a box whose left edge is east of its right one
            // hold what lies between them.
            (
                json!({"location": {"geo_bbox": {"top_left": {"lat": 60, "lon": -87}, "bottom_right": {"lat": 0, "lon": -89}}}}),
                false,
            ),
            (
                json!({"and": [{"role": "Forklift Operator"}, {"not": {"certs": {"contains": "OSHA 30"}}}]}),
                true,
            ),
        ];
        for (filter, want) in table {
            assert_eq!(matches(filter.clone(), worker.clone()), want, "{filter}");
        }
    }

    #[test]
    fn bad_filters_name_the_path() {
        let table = [
            (
                json!({"off": {"overlaps": {"from": "2026-12-20"}}}),
                "filter.off.overlaps.to",
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-12-20", "to": "2026-12-19"}}}),
                "filter.off.overlaps",
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-02-30", "to": "2026-12-19"}}}),
                "filter.off.overlaps.from",
            ),
            (
                json!({"off": {"overlaps": {"from": "2026-12-20", "to": "2026-12-21", "by": 1}}}),
                "filter.off.overlaps",
            ),
            (
                json!({"l": {"valid_any": {"names": [], "on": "2026-12-20"}}}),
                "filter.l.valid_any.names",
            ),
            (
                json!({"l": {"valid_any": {"names": ["a"], "on": 3}}}),
                "filter.l.valid_any.on",
            ),
            (json!({"l": {"valid_any": ["a"]}}), "filter.l.valid_any"),
            (json!({"role": {"like": "Fork%"}}), "filter.role.like"),
            (json!({"role": {"gt": "Welder"}}), "filter.role.gt"),
            (
                json!({"and": [{"role": "x"}, {"years": {"in": []}}]}),
                "filter.and[1].years.in",
            ),
            (json!({"or": {"role": "x"}}), "filter.or"),
            (json!({"not": {"role": [1]}}), "filter.not.role"),
            (json!({"and": [{"x": 1}], "y": 2}), "filter"),
            (json!({"cdl": {"exists": "yes"}}), "filter.cdl.exists"),
            (json!({"n": {}}), "filter.n"),
            (
                json!({"loc": {"geo_radius": {"lat": 91, "lon": 0, "miles": 5}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": 41, "lon": -88}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": 41, "lon": -88, "miles": -1}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": 41, "lon": -88, "miles": 1e9}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": 41, "lon": -88, "miles": 5, "km": 8}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": "41", "lon": -88, "miles": 5}}}),
                "filter.loc.geo_radius.lat",
            ),
            (
                json!({"loc": {"geo_radius": {"lat": 41, "lon": -88, "feet": 5}}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_radius": [41, -88, 5]}}),
                "filter.loc.geo_radius",
            ),
            (
                json!({"loc": {"geo_bbox": {"top_left": {"lat": 40, "lon": -89}, "bottom_right": {"lat": 41, "lon": -87}}}}),
                "filter.loc.geo_bbox",
            ),
            (
                json!({"loc": {"geo_bbox": {"top_left": {"lat": 42, "lon": -89}}}}),
                "filter.loc.geo_bbox.bottom_right",
            ),
            (
                json!({"loc": {"geo_bbox": {"top_left": {"lat": 42, "lon": -189}, "bottom_right": {"lat": 41, "lon": -87}}}}),
                "filter.loc.geo_bbox.top_left",
            ),
        ];
        for (filter, path) in table {
            let err = parse(filter.clone()).unwrap_err();
            assert_eq!(err.path, path, "{filter}: {err}");
        }
        let deep = json!({"not": {"not": {"not": {"not": {"not": {"x": 1}}}}}});
        assert!(parse(deep).unwrap_err().reason.contains("nested deeper"));
        let many: Map<String, Value> = (0..17).map(|i| (format!("f{i}"), json!(i))).collect();
        assert!(Filter::parse(&many, 16)
            .unwrap_err()
            .reason
            .contains("at most 16"));
    }

    #[test]
    fn conjunctions_expose_their_equalities() {
        let filter = parse(json!({"role": "Welder", "years": {"gte": 3}})).unwrap();
        assert_eq!(
            filter.required_equalities(),
            [("role".to_string(), "s:Welder".to_string())]
        );
        assert!(!filter.is_equalities_only());
        assert!(parse(json!({"role": "Welder", "state": "IL"}))
            .unwrap()
            .is_equalities_only());
        let or = parse(json!({"or": [{"role": "Welder"}, {"role": "Painter"}]})).unwrap();
        assert!(or.required_equalities().is_empty());
    }
}
