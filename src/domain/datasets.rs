//! Datasets: manifests, schema drift, and the read-only SQL rule.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One column of a dataset's Arrow schema, as the catalog reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Column {
    pub name: String,
    /// Arrow's display of the type, e.g. `Int64`, `Utf8`, `Float64`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// One ingest of a source file into a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestRecord {
    pub sha256: String,
    pub rows: u64,
    /// The Lance version the ingest produced.
    pub version: u64,
    pub at: DateTime<Utc>,
}

/// What the catalog knows of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetManifest {
    pub name: String,
    /// Where the Lance dataset lives, relative to `data.dir`.
    pub uri: String,
    pub schema: Vec<Column>,
    pub row_count: u64,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ingests: Vec<IngestRecord>,
}

/// `POST /v1/ingest/{dataset}` reply: the manifest, and whether this ingest
/// changed anything.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// `created`, `appended`, `replaced` or `unchanged`.
    pub status: &'static str,
    pub rows: u64,
    #[serde(flatten)]
    pub manifest: DatasetManifest,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetManifest>,
}

/// How an incoming CSV's schema differs from the dataset's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SchemaDrift {
    pub added: Vec<String>,
    pub missing: Vec<String>,
    /// `column: old -> new`
    pub retyped: Vec<String>,
}

impl SchemaDrift {
    pub fn between(existing: &[Column], incoming: &[Column]) -> Self {
        let mut drift = SchemaDrift::default();
        for column in incoming {
            match existing.iter().find(|c| c.name == column.name) {
                None => drift.added.push(column.name.clone()),
                Some(old) if old.data_type != column.data_type => drift.retyped.push(format!(
                    "{}: {} -> {}",
                    column.name, old.data_type, column.data_type
                )),
                Some(_) => {}
            }
        }
        for column in existing {
            if !incoming.iter().any(|c| c.name == column.name) {
                drift.missing.push(column.name.clone());
            }
        }
        drift
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.missing.is_empty() && self.retyped.is_empty()
    }
}

impl std::fmt::Display for SchemaDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "added: [{}]; missing: [{}]; retyped: [{}]",
            self.added.join(", "),
            self.missing.join(", "),
            self.retyped.join(", ")
        )
    }
}

/// `[a-z0-9_]{1,64}` starting with a letter: dataset names are SQL table
/// names, so they must need no quoting.
pub fn validate_dataset_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "dataset name '{}' is invalid: use 1 to 64 of a-z, 0-9 and '_', starting with a letter",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// `POST /v1/sql` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT, WITH … SELECT or EXPLAIN statement.
    pub sql: String,
    /// Rows at most (default and maximum: `query.max_rows`).
    #[serde(default, deserialize_with = "crate::domain::de::optional_integer")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: usize,
    /// Rows were left out: see `truncated_by`.
    pub truncated: bool,
    /// Why: `limit` (the row limit) or `max_result_bytes` (the answer's
    /// byte budget, `query.max_result_bytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: &str) -> Column {
        Column {
            name: name.into(),
            data_type: t.into(),
            nullable: true,
        }
    }

    #[test]
    fn drift_lists_added_missing_and_retyped_columns() {
        let old = vec![
            col("id", "Int64"),
            col("name", "Utf8"),
            col("rate", "Float64"),
        ];
        let new = vec![col("id", "Utf8"), col("name", "Utf8"), col("city", "Utf8")];
        let drift = SchemaDrift::between(&old, &new);
        assert_eq!(drift.added, ["city"]);
        assert_eq!(drift.missing, ["rate"]);
        assert_eq!(drift.retyped, ["id: Int64 -> Utf8"]);
        assert!(SchemaDrift::between(&old, &old).is_empty());
    }

    #[test]
    fn dataset_names_are_plain_identifiers() {
        assert!(validate_dataset_name("workers").is_ok());
        assert!(validate_dataset_name("orders_2026").is_ok());
        for bad in ["", "Workers", "1x", "a-b", "a b", "../x", &"a".repeat(65)] {
            assert!(validate_dataset_name(bad).is_err(), "{bad}");
        }
    }
}
