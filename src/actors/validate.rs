//! The `validate` actor: checks outreach (e-mail, SMS) and fill proposals
//! before they go out. E-mail and SMS checks are pure and answered in the
//! mailbox (microseconds); a fill needs the workers' facts, looked up in the
//! `workers` index by a task so the mailbox never waits on it.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::Value;

use crate::actors::matrix::WORKERS;
use crate::actors::vectors::index::{actor_name, IndexMessage};
use crate::domain::validate::{
    validate_email, validate_fill, validate_sms, ValidateRequest, Verdict, WorkerFacts,
};
use crate::supervision::{CallError, Directory, Fault};

pub const NAME: &str = "validate";

pub struct ValidateActor;

pub struct ValidateArguments {
    pub directory: Directory,
    pub call_timeout: Duration,
}

pub enum ValidateMessage {
    Validate {
        request: ValidateRequest,
        reply: RpcReplyPort<Result<Verdict, CallError>>,
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
                    let _ = reply.send(Ok(Verdict::from_problems(validate_email(
                        &to, &subject, &body,
                    ))));
                }
                ValidateRequest::Sms { to, body } => {
                    let _ = reply.send(Ok(Verdict::from_problems(validate_sms(&to, &body))));
                }
                ValidateRequest::Fill { order, worker_ids } => {
                    let directory = state.directory.clone();
                    let timeout = state.call_timeout;
                    tokio::spawn(async move {
                        let facts = lookup_workers(&directory, worker_ids.clone(), timeout).await;
                        let verdict = facts.map(|facts| {
                            Verdict::from_problems(validate_fill(&order, &worker_ids, |id| {
                                facts.get(id).cloned()
                            }))
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
    let text = |metadata: &Value, field: &str| {
        metadata
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(found
        .into_iter()
        .map(|(id, metadata)| {
            let facts = WorkerFacts {
                role: text(&metadata, "role"),
                city: text(&metadata, "city"),
                state: text(&metadata, "state"),
            };
            (id, facts)
        })
        .collect())
}
