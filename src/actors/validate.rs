//! The `validate` actor: checks outreach (e-mail, SMS) and fill proposals
//! before they go out. Every check runs off the mailbox: e-mail and SMS
//! scans (linear, microseconds for a real draft, a few milliseconds for a
//! megabyte of `[`) on the blocking pool, a fill's lookup of the workers'
//! facts in the `workers` index on a task, so one hostile body never
//! delays the next request. A fill names at most [`MAX_FILL_WORKERS`].

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::actors::matrix::WORKERS;
use crate::actors::vectors::index::{actor_name, IndexMessage};
use crate::codes::{ErrorCode, HasCode};
use crate::domain::validate::{
    validate_email, validate_fill, validate_sms, ValidateRequest, Verdict, WorkerFacts,
    MAX_FILL_WORKERS,
};
use crate::supervision::{CallError, Directory, Fault};

pub const NAME: &str = "validate";

pub struct ValidateActor;

pub struct ValidateArguments {
    pub directory: Directory,
    pub call_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("worker_ids may hold at most {max} ids, got {got}")]
    TooManyWorkers { max: usize, got: usize },
    #[error("the check failed inside: {0}")]
    Internal(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

impl HasCode for ValidateError {
    fn code(&self) -> ErrorCode {
        use crate::actors::validate::ValidateError;
        match self {
            ValidateError::TooManyWorkers { .. } => ErrorCode::TooManyIds,
            ValidateError::Internal(_) => ErrorCode::Internal,
            ValidateError::Call(err) => err.code(),
        }
    }
}

pub enum ValidateMessage {
    Validate {
        request: ValidateRequest,
        reply: RpcReplyPort<Result<Verdict, ValidateError>>,
    },
    Fault(Fault),
}

impl From<Fault> for ValidateMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

impl Actor for ValidateActor {
    type Msg = ValidateMessage;
    type State = ValidateArguments;
    type Arguments = ValidateArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ValidateArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ValidateMessage::Validate { request, reply } => match request {
                ValidateRequest::Email { to, subject, body } => {
                    tokio::spawn(async move {
                        let checked = tokio::task::spawn_blocking(move || {
                            validate_email(&to, &subject, &body)
                        })
                        .await;
                        let _ = reply.send(verdict_of(checked));
                    });
                }
                ValidateRequest::Sms { to, body } => {
                    tokio::spawn(async move {
                        let checked =
                            tokio::task::spawn_blocking(move || validate_sms(&to, &body)).await;
                        let _ = reply.send(verdict_of(checked));
                    });
                }
                ValidateRequest::Fill { worker_ids, .. } if worker_ids.len() > MAX_FILL_WORKERS => {
                    let _ = reply.send(Err(ValidateError::TooManyWorkers {
                        max: MAX_FILL_WORKERS,
                        got: worker_ids.len(),
                    }));
                }
                ValidateRequest::Fill { order, worker_ids } => {
                    let directory = state.directory.clone();
                    let timeout = state.call_timeout;
                    tokio::spawn(async move {
                        let facts = lookup_workers(&directory, worker_ids.clone(), timeout).await;
                        let verdict = facts.map_err(ValidateError::from).map(|facts| {
                            let today = chrono::Utc::now().date_naive();
                            Verdict::from_problems(validate_fill(
                                &order,
                                &worker_ids,
                                |id| facts.get(id).cloned(),
                                today,
                            ))
                        });
                        let _ = reply.send(verdict);
                    });
                }
            },
            ValidateMessage::Fault(fault) => fault.apply(NAME).await?,
        }
        Ok(())
    }
}

fn verdict_of(
    checked: Result<Vec<crate::domain::validate::Problem>, tokio::task::JoinError>,
) -> Result<Verdict, ValidateError> {
    checked
        .map(Verdict::from_problems)
        .map_err(|e| ValidateError::Internal(e.to_string()))
}

/// Role and location of each known worker; an absent `workers` index means
/// no worker is known.
async fn lookup_workers(
    directory: &Directory,
    ids: Vec<String>,
    timeout: Duration,
) -> Result<HashMap<String, WorkerFacts>, CallError> {
    let actor = actor_name(WORKERS);
    let found = match directory
        .call_idempotent(
            &actor,
            |reply| IndexMessage::Lookup {
                ids: ids.clone(),
                reply,
            },
            timeout,
        )
        .await
    {
        Ok(found) => found,
        Err(CallError::Unavailable { .. }) if !directory.known(&actor) => HashMap::new(),
        Err(err) => return Err(err),
    };
    Ok(found
        .into_iter()
        .map(|(id, metadata)| (id, WorkerFacts::of(&metadata)))
        .collect())
}
