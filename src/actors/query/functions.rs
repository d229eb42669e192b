//! Scalar functions that could build an unbounded value from a small
//! query, replaced in every query's session by capped versions.
//!
//! `SELECT length(repeat('x', 1500000000))` asks DataFusion for a 1.5 GB
//! string: it is allocated outside the query memory pool (a function's
//! output is not accounted), and the constant folder builds it while
//! planning, before any timeout can cancel the query. The capped version
//! checks the size its arguments ask for, before calling the built-in, and
//! refuses with `function_output_too_large` when
//! - one row asks for more than `query.max_function_output`, or
//! - the whole call (every row of its batch) asks for more than
//!   `query.max_function_batch_output`. A call on constants counts once for
//!   every row of a batch (`batch_size`, 8192): the constant folder turns it
//!   into a literal that each batch repeats row by row.
//!
//! | function | what one row asks for |
//! |---|---|
//! | `repeat(s, n)` | `len(s) × n` bytes |
//! | `lpad(s, n[, fill])`, `rpad(…)` | `4 × n` bytes (`n` characters) |
//! | `replace(s, from, to)`, `regexp_replace(s, re, to[, flags])` | `(len(s) + 1) × max(len(to), 1)` bytes (every position replaced) |
//! | `array_repeat(e, n)` (`list_repeat`) | `n ×` the values in `e`, however nested |
//! | `array_resize(a, n[, v])` (`list_resize`) | `n ×` the values in `v` |
//! | `range(…)`, `generate_series(…)` (as scalars) | the elements the bounds and step give |
//!
//! The table functions `range`/`generate_series` stream in batches and are
//! bounded by `query.max_rows`, `query.timeout_ms` and cancellation.

use std::sync::Arc;

use lance::deps::arrow_array::{Array, ArrayRef};
use lance::deps::datafusion::arrow::array::AsArray;
use lance::deps::datafusion::arrow::compute::cast;
use lance::deps::datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use lance::deps::datafusion::common::{DataFusionError, Result, ScalarValue};
use lance::deps::datafusion::execution::FunctionRegistry;
use lance::deps::datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use lance::deps::datafusion::prelude::SessionContext;

/// A call asked for more than `query.max_function_output` (one row) or
/// `query.max_function_batch_output` (the whole call).
#[derive(Debug, thiserror::Error)]
#[error("{function}() would build {asked} {unit}{per}, more than {setting} ({cap}) allows")]
pub struct OutputTooLarge {
    pub function: String,
    pub asked: u128,
    pub unit: &'static str,
    /// `" in one row"` or `" in one batch"`.
    pub per: &'static str,
    pub setting: &'static str,
    pub cap: usize,
}

/// What a session's capped functions may build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caps {
    /// `query.max_function_output`: one row.
    pub per_row: usize,
    /// `query.max_function_batch_output`: one call over its batch.
    pub per_batch: usize,
    /// The session's batch size: the rows a constant is repeated over.
    pub batch_rows: usize,
}

/// What a capped function bounds, and how to read it from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: bytes of `s` times `n`.
    Repeat,
    /// `lpad`/`rpad(s, n, …)`: `n` characters.
    Pad,
    /// `array_repeat(e, n)`: `n` times the elements of `e`.
    ArrayRepeat,
    /// `array_resize(a, n, …)`: `n` elements.
    Resize,
    /// `range`/`generate_series`: elements between the bounds.
    Series,
    /// `replace`/`regexp_replace(s, _, to, …)`: every position of `s`
    /// replaced by `to`.
    Replace,
}

const CAPPED: [(&str, Bound); 9] = [
    ("repeat", Bound::Repeat),
    ("lpad", Bound::Pad),
    ("rpad", Bound::Pad),
    ("array_repeat", Bound::ArrayRepeat),
    ("array_resize", Bound::Resize),
    ("range", Bound::Series),
    ("generate_series", Bound::Series),
    ("replace", Bound::Replace),
    ("regexp_replace", Bound::Replace),
];

/// Replaces the built-ins of [`CAPPED`] in `session` by capped versions.
/// A function the session does not have is left alone.
pub fn install(session: &SessionContext, caps: Caps) {
    for (name, bound) in CAPPED {
        let Ok(inner) = session.udf(name) else {
            continue;
        };
        session.register_udf(ScalarUDF::new_from_impl(Capped { inner, bound, caps }));
    }
}

/// A built-in with a bound on what one call may build. Everything but the
/// call itself is the built-in's: name, aliases, signature, types. Not
/// delegated: `simplify` and `with_updated_config`, which could hand the
/// planner the uncapped built-in back.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Capped {
    inner: Arc<ScalarUDF>,
    bound: Bound,
    caps: Caps,
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let asked = self.asked(&args.args, args.number_rows)?;
        let unit = match self.bound {
            Bound::Repeat | Bound::Pad | Bound::Replace => "bytes",
            _ => "elements",
        };
        let bounds = [
            (
                asked.most,
                " in one row",
                "query.max_function_output",
                self.caps.per_row,
            ),
            (
                asked.total,
                " in one batch",
                "query.max_function_batch_output",
                self.caps.per_batch,
            ),
        ];
        for (asked, per, setting, cap) in bounds {
            if asked > cap as u128 {
                return Err(DataFusionError::External(Box::new(OutputTooLarge {
                    function: self.inner.name().to_string(),
                    asked,
                    unit,
                    per,
                    setting,
                    cap,
                })));
            }
        }
        self.inner.invoke_with_args(args)
    }
}

/// What a call asks for: the most of one row, and the sum over its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Asked {
    most: u128,
    total: u128,
}

/// A per-row quantity of an argument: one value for a constant, or one per
/// row (nulls count 0).
enum Each {
    All(u128),
    Rows(Vec<u128>),
}

impl Each {
    fn at(&self, row: usize) -> u128 {
        match self {
            Each::All(v) => *v,
            Each::Rows(values) => values.get(row).copied().unwrap_or(0),
        }
    }
}

/// `f` of an argument's values: once for a constant, per row otherwise.
fn each(
    value: Option<&ColumnarValue>,
    absent: u128,
    f: impl Fn(&ArrayRef) -> Result<Vec<u128>>,
) -> Result<Each> {
    Ok(match value {
        None => Each::All(absent),
        Some(ColumnarValue::Scalar(scalar)) => {
            let array = scalar.to_array_of_size(1)?;
            Each::All(f(&array)?.first().copied().unwrap_or(0))
        }
        Some(ColumnarValue::Array(array)) => Each::Rows(f(array)?),
    })
}

impl Capped {
    /// What this call asks for, from its arguments. A call whose arguments
    /// are all constants counts once for every row of a batch.
    fn asked(&self, args: &[ColumnarValue], rows: usize) -> Result<Asked> {
        let constant = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arg = |i: usize| args.get(i);
        let per_row: Vec<Each> = match self.bound {
            Bound::Repeat => vec![each(arg(0), 0, lengths)?, each(arg(1), 0, counts)?],
            // Up to 4 bytes a character.
            Bound::Pad => vec![each(arg(1), 0, counts)?, Each::All(4)],
            Bound::Resize => vec![each(arg(1), 0, counts)?, each(arg(2), 1, values)?],
            Bound::ArrayRepeat => vec![each(arg(0), 1, values)?, each(arg(1), 0, counts)?],
            Bound::Replace => {
                let plus_one = |a: &ArrayRef| Ok(lengths(a)?.into_iter().map(|n| n + 1).collect());
                let at_least_one =
                    |a: &ArrayRef| Ok(lengths(a)?.into_iter().map(|n| n.max(1)).collect());
                vec![each(arg(0), 1, plus_one)?, each(arg(2), 1, at_least_one)?]
            }
            Bound::Series => {
                let most = series_length(args, rows)?;
                return Ok(Asked {
                    most,
                    total: most.saturating_mul(rows.max(1) as u128),
                });
            }
        };
        let row_ask = |row: usize| {
            per_row.iter().fold(1u128, |product, factor| {
                product.saturating_mul(factor.at(row))
            })
        };
        if constant {
            let most = row_ask(0);
            let rows = rows.max(self.caps.batch_rows).max(1) as u128;
            return Ok(Asked {
                most,
                total: most.saturating_mul(rows),
            });
        }
        let mut asked = Asked { most: 0, total: 0 };
        for row in 0..rows.max(1) {
            let ask = row_ask(row);
            asked.most = asked.most.max(ask);
            asked.total = asked.total.saturating_add(ask);
        }
        Ok(asked)
    }
}

fn to_array(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    value.to_array(rows.max(1))
}

/// Each value as a count: integers (and floats) as themselves, negatives,
/// nulls and anything else as 0.
fn counts(array: &ArrayRef) -> Result<Vec<u128>> {
    if !array.data_type().is_integer() && !array.data_type().is_floating() {
        return Ok(vec![0; array.len()]);
    }
    let ints = cast(array, &DataType::Int64)?;
    Ok(ints
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0).max(0) as u128)
        .collect())
}

/// Each value's length in bytes (anything but strings and binaries is
/// measured as the string the built-in would cast it to).
fn lengths(array: &ArrayRef) -> Result<Vec<u128>> {
    fn of<'a>(values: impl Iterator<Item = Option<usize>> + 'a) -> Vec<u128> {
        values.map(|n| n.unwrap_or(0) as u128).collect()
    }
    Ok(match array.data_type() {
        DataType::Utf8 => of(array.as_string::<i32>().iter().map(|s| s.map(str::len))),
        DataType::LargeUtf8 => of(array.as_string::<i64>().iter().map(|s| s.map(str::len))),
        DataType::Utf8View => of(array.as_string_view().iter().map(|s| s.map(str::len))),
        DataType::Binary => of(array.as_binary::<i32>().iter().map(|b| b.map(<[u8]>::len))),
        DataType::LargeBinary => of(array.as_binary::<i64>().iter().map(|b| b.map(<[u8]>::len))),
        _ => {
            let strings = cast(array, &DataType::Utf8)?;
            of(strings.as_string::<i32>().iter().map(|s| s.map(str::len)))
        }
    })
}

/// Each value's count of leaf values: a list's, however nested (a list of
/// lists of 1,000 counts its lists' lengths summed); 1 for anything else.
fn values(array: &ArrayRef) -> Result<Vec<u128>> {
    Ok((0..array.len())
        .map(|row| leaves(array.as_ref(), row, row + 1))
        .collect())
}

/// The leaf values of rows `start..end` of `array`.
fn leaves(array: &dyn Array, start: usize, end: usize) -> u128 {
    match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            let offsets = list.value_offsets();
            let (from, to) = (offsets[start].max(0) as usize, offsets[end].max(0) as usize);
            leaves(list.values().as_ref(), from, to)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            let offsets = list.value_offsets();
            let (from, to) = (offsets[start].max(0) as usize, offsets[end].max(0) as usize);
            leaves(list.values().as_ref(), from, to)
        }
        DataType::FixedSizeList(_, size) => {
            let list = array.as_fixed_size_list();
            let size = (*size).max(0) as usize;
            leaves(list.values().as_ref(), start * size, end * size)
        }
        _ => end.saturating_sub(start) as u128,
    }
}

/// The elements `range`/`generate_series` would build for the longest row:
/// `(stop − start) / step`. Integers exactly; dates and timestamps by
/// their distance in microseconds over the step's (a month counted as 28
/// days, so the bound errs high). The arithmetic is in `i128` on the raw
/// values: no date, however far, overflows it.
fn series_length(args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let arrays: Vec<ArrayRef> = args
        .iter()
        .map(|a| to_array(a, rows))
        .collect::<Result<_>>()?;
    let (start, stop, step) = match arrays.len() {
        1 => (None, &arrays[0], None),
        2 => (Some(&arrays[0]), &arrays[1], None),
        _ => (Some(&arrays[0]), &arrays[1], Some(&arrays[2])),
    };
    let temporal = matches!(
        stop.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    );
    let values = |array: &ArrayRef| -> Result<Vec<Option<i128>>> {
        if temporal {
            Ok(micros(array))
        } else {
            Ok(cast(array, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(i128::from))
                .collect())
        }
    };
    let stops = values(stop)?;
    let starts = start.map(values).transpose()?;
    let steps = match step {
        None => None,
        Some(step) if temporal => Some(interval_micros(step)),
        Some(step) => Some(values(step)?),
    };
    let mut most = 0u128;
    for (row, to) in stops.iter().enumerate() {
        let Some(to) = *to else { continue };
        let from = match &starts {
            Some(starts) => match starts.get(row).copied().flatten() {
                Some(from) => from,
                None => continue,
            },
            None => 0,
        };
        let step = match &steps {
            Some(steps) => match steps.get(row).copied().flatten() {
                Some(step) => step,
                None => continue,
            },
            // One day for dates without a step (they need one anyway).
            None if temporal => 86_400_000_000,
            None => 1,
        };
        if step == 0 {
            continue;
        }
        let span = (to - from) / step;
        if span > 0 {
            most = most.max(span as u128 + 1);
        }
    }
    Ok(most)
}

/// Dates and timestamps as microseconds since the epoch.
fn micros(array: &ArrayRef) -> Vec<Option<i128>> {
    use lance::deps::datafusion::arrow::datatypes::{
        Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType,
    };
    fn scaled<T: lance::deps::datafusion::arrow::datatypes::ArrowPrimitiveType>(
        array: &ArrayRef,
        to_micros: impl Fn(i128) -> i128,
    ) -> Vec<Option<i128>>
    where
        T::Native: Into<i64>,
    {
        array
            .as_primitive::<T>()
            .iter()
            .map(|v| v.map(|v| to_micros(i128::from(v.into()))))
            .collect()
    }
    match array.data_type() {
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map(|days| i128::from(days) * 86_400_000_000))
            .collect(),
        DataType::Date64 => scaled::<Date64Type>(array, |ms| ms * 1_000),
        DataType::Timestamp(TimeUnit::Second, _) => {
            scaled::<TimestampSecondType>(array, |s| s * 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scaled::<TimestampMillisecondType>(array, |ms| ms * 1_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            scaled::<TimestampMicrosecondType>(array, |us| us)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            scaled::<TimestampNanosecondType>(array, |ns| ns / 1_000)
        }
        _ => vec![None; array.len()],
    }
}

/// Each interval as microseconds (months as 28 days).
fn interval_micros(array: &ArrayRef) -> Vec<Option<i128>> {
    (0..array.len())
        .map(|row| {
            let value = ScalarValue::try_from_array(array, row).ok()?;
            const DAY: i128 = 86_400_000_000;
            match value {
                ScalarValue::IntervalYearMonth(Some(months)) => Some(months as i128 * 28 * DAY),
                ScalarValue::IntervalDayTime(Some(v)) => {
                    Some(v.days as i128 * DAY + v.milliseconds as i128 * 1_000)
                }
                ScalarValue::IntervalMonthDayNano(Some(v)) => Some(
                    v.months as i128 * 28 * DAY
                        + v.days as i128 * DAY
                        + v.nanoseconds as i128 / 1_000,
                ),
                _ => None,
            }
        })
        .collect()
}

/// Whether `err` (anywhere in its chain) is a capped function's refusal.
pub fn output_too_large(err: &DataFusionError) -> Option<&OutputTooLarge> {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(found) = current.downcast_ref::<OutputTooLarge>() {
            return Some(found);
        }
        if let Some(DataFusionError::External(inner)) = current.downcast_ref::<DataFusionError>() {
            if let Some(found) = inner.downcast_ref::<OutputTooLarge>() {
                return Some(found);
            }
        }
        current = current.source()?;
    }
}
