//! The data-plane use cases: the dataset catalog, dropping a dataset, and
//! SQL over every dataset. (Objects and ingest stream their bodies: their
//! handlers in `http::data` feed the actors' channels directly.)

use std::time::Duration;

use crate::actors::catalog::{self, CatalogMessage};
use crate::actors::ingest::{self, IngestMessage};
use crate::actors::query::{self, QueryMessage};
use crate::domain::datasets::{DatasetManifest, SqlRequest, SqlResult};

use super::{ApiError, Context};

/// Every dataset's manifest.
pub async fn list_datasets(context: &Context) -> Result<Vec<DatasetManifest>, ApiError> {
    Ok(context
        .call(catalog::NAME, |reply| CatalogMessage::List { reply })
        .await?)
}

/// One dataset's manifest: schema, rows, version, ingests.
pub async fn describe_dataset(context: &Context, name: &str) -> Result<DatasetManifest, ApiError> {
    let target = name.to_string();
    context
        .call(catalog::NAME, |reply| CatalogMessage::Get {
            name: target,
            reply,
        })
        .await?
        .ok_or_else(|| ApiError::DatasetNotFound(name.to_string()))
}

/// Drops a dataset: its catalog entry and every file of every version.
/// `replay_runs` is the service's own.
pub async fn drop_dataset(context: &Context, name: &str) -> Result<(), ApiError> {
    if name == crate::actors::chat::replay::DATASET {
        return Err(ApiError::ReservedDataset(name.to_string()));
    }
    let dataset = name.to_string();
    let timeout = Duration::from_millis(context.settings.ingest.timeout_ms);
    Ok(context
        .call_with(
            ingest::NAME,
            |reply| IngestMessage::Drop { dataset, reply },
            timeout,
        )
        .await??)
}

/// One read-only SQL query over every dataset, at its latest version.
pub async fn sql(context: &Context, request: SqlRequest) -> Result<SqlResult, ApiError> {
    // The query enforces its own time limit; the call waits a little longer.
    let timeout = Duration::from_millis(context.settings.query.timeout_ms) + Duration::from_secs(1);
    Ok(context
        .call_with(
            query::NAME,
            |reply| QueryMessage::Sql { request, reply },
            timeout,
        )
        .await??)
}
