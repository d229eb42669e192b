//! Scalar functions that could build an unbounded value from a small
//! query, replaced in every query's session by capped versions.
//!
//! `SELECT length(repeat('x', 1500000000))` asks DataFusion for a 1.5 GB
//! string: it is allocated outside the query memory pool (a function's
//! output is not accounted), and the constant folder builds it while
//! planning, before any timeout can cancel the query. The capped version
//! checks the size its arguments ask for — over every row, before calling
//! the built-in — and refuses with `function_output_too_large`.
//!
//! | function | what is bounded |
//! |---|---|
//! | `repeat(s, n)` | `len(s) × n` bytes |
//! | `lpad(s, n[, fill])`, `rpad(…)` | `4 × n` bytes (`n` characters) |
//! | `array_repeat(e, n)` (`list_repeat`) | `n × len(e)` elements |
//! | `array_resize(a, n[, v])` (`list_resize`) | `n` elements |
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

/// A call asked for more than `query.max_function_output`.
#[derive(Debug, thiserror::Error)]
#[error("{function}() would build {asked} {unit}, more than query.max_function_output ({cap}) allows")]
pub struct OutputTooLarge {
    pub function: String,
    pub asked: u128,
    pub unit: &'static str,
    pub cap: usize,
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
}

const CAPPED: [(&str, Bound); 7] = [
    ("repeat", Bound::Repeat),
    ("lpad", Bound::Pad),
    ("rpad", Bound::Pad),
    ("array_repeat", Bound::ArrayRepeat),
    ("array_resize", Bound::Resize),
    ("range", Bound::Series),
    ("generate_series", Bound::Series),
];

/// Replaces the built-ins of [`CAPPED`] in `session` by capped versions.
/// A function the session does not have is left alone.
pub fn install(session: &SessionContext, cap: usize) {
    for (name, bound) in CAPPED {
        let Ok(inner) = session.udf(name) else {
            continue;
        };
        session.register_udf(ScalarUDF::new_from_impl(Capped { inner, bound, cap }));
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
    cap: usize,
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
        let (limit, unit) = match self.bound {
            Bound::Repeat | Bound::Pad => (self.cap as u128, "bytes"),
            _ => (self.cap as u128, "elements"),
        };
        if asked > limit {
            return Err(DataFusionError::External(Box::new(OutputTooLarge {
                function: self.inner.name().to_string(),
                asked,
                unit,
                cap: limit as usize,
            })));
        }
        self.inner.invoke_with_args(args)
    }
}

impl Capped {
    /// The most one row of this call asks for, over every row.
    fn asked(&self, args: &[ColumnarValue], rows: usize) -> Result<u128> {
        let arg = |i: usize| args.get(i);
        Ok(match self.bound {
            Bound::Repeat => {
                let bytes = arg(0).map_or(Ok(0), |a| max_length(a, rows))?;
                let times = arg(1).map_or(Ok(0), |a| max_int(a, rows))?;
                bytes as u128 * times.max(0) as u128
            }
            // Up to 4 bytes a character.
            Bound::Pad => arg(1).map_or(Ok(0), |a| max_int(a, rows))?.max(0) as u128 * 4,
            Bound::Resize => arg(1).map_or(Ok(0), |a| max_int(a, rows))?.max(0) as u128,
            Bound::ArrayRepeat => {
                let elements = arg(0).map_or(Ok(1), |a| max_elements(a, rows))?;
                let times = arg(1).map_or(Ok(0), |a| max_int(a, rows))?;
                elements.max(1) as u128 * times.max(0) as u128
            }
            Bound::Series => series_length(args, rows)?,
        })
    }
}

fn to_array(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    value.to_array(rows.max(1))
}

/// The largest integer among the values (nulls and non-integers: 0).
fn max_int(value: &ColumnarValue, rows: usize) -> Result<i64> {
    let array = to_array(value, rows)?;
    if !array.data_type().is_integer() && !array.data_type().is_floating() {
        return Ok(0);
    }
    let ints = cast(&array, &DataType::Int64)?;
    Ok(ints
        .as_primitive::<Int64Type>()
        .iter()
        .flatten()
        .max()
        .unwrap_or(0))
}

/// The longest string among the values, in bytes.
fn max_length(value: &ColumnarValue, rows: usize) -> Result<usize> {
    let array = to_array(value, rows)?;
    let longest = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().flatten().map(str::len).max(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().flatten().map(str::len).max(),
        DataType::Utf8View => array.as_string_view().iter().flatten().map(str::len).max(),
        DataType::Binary => array.as_binary::<i32>().iter().flatten().map(<[u8]>::len).max(),
        DataType::LargeBinary => array.as_binary::<i64>().iter().flatten().map(<[u8]>::len).max(),
        _ => {
            // Anything else is cast to a string first by the built-in.
            let strings = cast(&array, &DataType::Utf8)?;
            strings.as_string::<i32>().iter().flatten().map(str::len).max()
        }
    };
    Ok(longest.unwrap_or(0))
}

/// The most elements a value holds (a list's length; 1 for anything else).
fn max_elements(value: &ColumnarValue, rows: usize) -> Result<usize> {
    let array = to_array(value, rows)?;
    Ok(match array.data_type() {
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            (0..list.len()).map(|i| list.value_length(i).max(0) as usize).max().unwrap_or(0)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            (0..list.len()).map(|i| list.value_length(i).max(0) as usize).max().unwrap_or(0)
        }
        _ => 1,
    })
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
                    v.months as i128 * 28 * DAY + v.days as i128 * DAY + v.nanoseconds as i128 / 1_000,
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
