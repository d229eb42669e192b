//! Actor-level tests of the supervisor: small trees of probe actors, driven
//! through their mailboxes and read back through the status board.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::*;
use crate::telemetry::Metrics;

type Log = Arc<Mutex<Vec<String>>>;

/// A child that records its starts and stops, and fails on request.
struct Probe;

struct ProbeArguments {
    name: String,
    log: Log,
    /// How many of the next starts should fail in `pre_start`.
    failing_starts: Arc<AtomicU32>,
}

enum ProbeMessage {
    /// Stop normally.
    Exit,
    /// Panic while the caller is waiting for this reply.
    PanicHolding(RpcReplyPort<()>),
    /// Reply with the actor's name.
    Echo(RpcReplyPort<String>),
    Fault(Fault),
}

impl From<Fault> for ProbeMessage {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

struct ProbeState {
    name: String,
    log: Log,
}

impl Actor for Probe {
    type Msg = ProbeMessage;
    type State = ProbeState;
    type Arguments = ProbeArguments;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ProbeArguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let refused = args
            .failing_starts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(format!("{} refuses to start", args.name).into());
        }
        args.log.lock().push(format!("start:{}", args.name));
        Ok(ProbeState {
            name: args.name,
            log: args.log,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.log.lock().push(format!("stop:{}", state.name));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ProbeMessage::Exit => myself.stop(None),
            ProbeMessage::PanicHolding(_reply) => panic!("{} panics mid-call", state.name),
            ProbeMessage::Echo(reply) => {
                let _ = reply.send(state.name.clone());
            }
            ProbeMessage::Fault(fault) => fault.apply(&state.name).await?,
        }
        Ok(())
    }
}

/// A test tree: shared directory, metrics and start/stop log.
struct Tree {
    directory: Directory,
    metrics: Arc<Metrics>,
    log: Log,
}

impl Tree {
    fn new() -> Self {
        Self {
            directory: Directory::new(),
            metrics: Arc::new(Metrics::new().unwrap()),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn probe(&self, name: &str, failing_starts: u32) -> ChildSpec {
        let name = name.to_string();
        let log = self.log.clone();
        let failing = Arc::new(AtomicU32::new(failing_starts));
        ChildSpec::worker(name.clone(), move || {
            (
                Probe,
                ProbeArguments {
                    name: name.clone(),
                    log: log.clone(),
                    failing_starts: failing.clone(),
                },
            )
        })
        .shutdown(Duration::from_secs(2))
    }

    fn arguments(
        &self,
        name: &str,
        strategy: Strategy,
        max_restarts: u32,
        children: Vec<ChildSpec>,
        board: StatusBoard,
    ) -> SupervisorArguments {
        SupervisorArguments {
            name: name.to_string(),
            strategy,
            intensity: Intensity {
                max_restarts,
                period: Duration::from_secs(10),
            },
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(20),
            },
            children,
            board,
            directory: self.directory.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn start(
        &self,
        strategy: Strategy,
        max_restarts: u32,
        children: Vec<ChildSpec>,
    ) -> Result<(ActorRef<SupervisorMessage>, StatusBoard), ractor::SpawnErr> {
        let board = StatusBoard::new(strategy);
        let arguments = self.arguments("root", strategy, max_restarts, children, board.clone());
        let (supervisor, _) = Actor::spawn(
            Some(self.directory.registered_name("root")),
            Supervisor,
            arguments,
        )
        .await?;
        Ok((supervisor, board))
    }

    fn id(&self, name: &str) -> Option<ActorId> {
        self.directory
            .lookup::<ProbeMessage>(name)
            .map(|a| a.get_id())
    }

    fn panic(&self, name: &str) {
        self.directory.inject(name, Fault::panic(), true).unwrap();
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().clone()
    }
}

/// Waits for an event; the bound only fails a test that would hang.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn running_with(board: &StatusBoard, name: &str, restarts: u64) -> bool {
    board.status(name) == Some(ChildStatus::Running) && board.restarts(name) == Some(restarts)
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let tree = Tree::new();
    let children = vec![tree.probe("a", 0), tree.probe("b", 0), tree.probe("c", 0)];
    let (_sup, board) = tree.start(Strategy::OneForOne, 5, children).await.unwrap();
    let (a, b, c) = (tree.id("a"), tree.id("b"), tree.id("c"));

    tree.panic("b");
    eventually("b restarted", || {
        running_with(&board, "b", 1) && tree.id("b").is_some()
    })
    .await;

    assert_ne!(tree.id("b"), b, "b is a new incarnation");
    assert_eq!(tree.id("a"), a);
    assert_eq!(tree.id("c"), c);
    assert_eq!(board.restarts("a"), Some(0));
    assert_eq!(board.restarts("c"), Some(0));
    let failure = board.last_failure("b").expect("failure recorded");
    assert!(
        failure.reason.contains("injected fault"),
        "{}",
        failure.reason
    );
    assert_eq!(
        tree.metrics.actor_restarts.with_label_values(&["b"]).get(),
        1
    );
}

#[tokio::test]
async fn one_for_all_restarts_every_child() {
    let tree = Tree::new();
    let children = vec![tree.probe("a", 0), tree.probe("b", 0), tree.probe("c", 0)];
    let (_sup, board) = tree.start(Strategy::OneForAll, 5, children).await.unwrap();
    let before = [tree.id("a"), tree.id("b"), tree.id("c")];

    tree.panic("b");
    eventually("all restarted", || {
        ["a", "b", "c"].iter().all(|n| running_with(&board, n, 1))
    })
    .await;

    let after = [tree.id("a"), tree.id("b"), tree.id("c")];
    for (old, new) in before.iter().zip(after.iter()) {
        assert!(new.is_some());
        assert_ne!(old, new);
    }
    // The survivors were stopped in reverse start order, then all started in order.
    let log = tree.log();
    let tail: Vec<&str> = log[3..].iter().map(String::as_str).collect();
    assert_eq!(tail, ["stop:c", "stop:a", "start:a", "start:b", "start:c"]);
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let tree = Tree::new();
    let children = vec![tree.probe("a", 0), tree.probe("b", 0), tree.probe("c", 0)];
    let (_sup, board) = tree.start(Strategy::RestForOne, 5, children).await.unwrap();
    let (a, b, c) = (tree.id("a"), tree.id("b"), tree.id("c"));

    tree.panic("b");
    eventually("b and c restarted", || {
        running_with(&board, "b", 1) && running_with(&board, "c", 1)
    })
    .await;

    assert_eq!(tree.id("a"), a, "a started before b and is untouched");
    assert_ne!(tree.id("b"), b);
    assert_ne!(tree.id("c"), c);
    assert_eq!(board.restarts("a"), Some(0));
}

#[tokio::test]
async fn exceeding_the_intensity_escalates_to_the_parent() {
    let tree = Tree::new();
    let inner_board = StatusBoard::new(Strategy::OneForOne);
    let inner = {
        let tree_directory = tree.directory.clone();
        let metrics = tree.metrics.clone();
        let board = inner_board.clone();
        let child = tree.probe("a", 0);
        ChildSpec::supervisor("inner", inner_board.clone(), move || SupervisorArguments {
            name: "inner".into(),
            strategy: Strategy::OneForOne,
            intensity: Intensity {
                max_restarts: 2,
                period: Duration::from_secs(10),
            },
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
            children: vec![child.clone()],
            board: board.clone(),
            directory: tree_directory.clone(),
            metrics: metrics.clone(),
        })
    };
    let (_root, root_board) = tree
        .start(Strategy::OneForOne, 5, vec![inner])
        .await
        .unwrap();

    for restarts in 1..=2 {
        tree.panic("a");
        eventually("a restarted", || running_with(&inner_board, "a", restarts)).await;
    }
    assert_eq!(root_board.restarts("inner"), Some(0));

    // The third restart within the period is one too many for `inner`.
    tree.panic("a");
    eventually("inner restarted by root", || {
        root_board.restarts("inner") == Some(1)
            && root_board.status("inner") == Some(ChildStatus::Running)
    })
    .await;
    let failure = root_board
        .last_failure("inner")
        .expect("escalation recorded");
    assert!(failure.reason.contains("gave up"), "{}", failure.reason);
    eventually("a running under the new inner", || {
        inner_board.status("a") == Some(ChildStatus::Running) && tree.id("a").is_some()
    })
    .await;
    assert_eq!(
        tree.metrics
            .supervision_events
            .with_label_values(&["inner", "escalation"])
            .get(),
        1
    );
}

#[tokio::test]
async fn transient_children_are_not_restarted_after_a_normal_exit() {
    let tree = Tree::new();
    let children = vec![
        tree.probe("t", 0).restart(Restart::Transient),
        tree.probe("u", 0).restart(Restart::Transient),
    ];
    let (_sup, board) = tree.start(Strategy::OneForOne, 5, children).await.unwrap();

    tree.directory
        .cast::<ProbeMessage>("t", ProbeMessage::Exit)
        .unwrap();
    // `Stopped` is the supervisor's decision not to restart it.
    eventually("t stopped", || {
        board.status("t") == Some(ChildStatus::Stopped)
    })
    .await;
    assert_eq!(board.restarts("t"), Some(0));
    assert!(tree.id("t").is_none());

    // An abnormal exit of a transient child is restarted.
    tree.panic("u");
    eventually("u restarted", || running_with(&board, "u", 1)).await;
}

#[tokio::test]
async fn temporary_children_are_never_restarted() {
    let tree = Tree::new();
    let children = vec![tree.probe("tmp", 0).restart(Restart::Temporary)];
    let (_sup, board) = tree.start(Strategy::OneForOne, 5, children).await.unwrap();

    tree.panic("tmp");
    // `Failed` is the supervisor's decision not to restart it.
    eventually("tmp failed", || {
        board.status("tmp") == Some(ChildStatus::Failed)
    })
    .await;
    assert_eq!(board.restarts("tmp"), Some(0));
    assert!(tree.id("tmp").is_none());
}

#[tokio::test]
async fn a_failing_pre_start_counts_as_a_restart() {
    let tree = Tree::new();
    let (_sup, board) = tree
        .start(Strategy::OneForOne, 5, vec![tree.probe("flaky", 2)])
        .await
        .unwrap();

    eventually("flaky running", || {
        board.status("flaky") == Some(ChildStatus::Running)
    })
    .await;
    assert_eq!(board.restarts("flaky"), Some(2));
    let failure = board.last_failure("flaky").unwrap();
    assert!(
        failure.reason.contains("start failed"),
        "{}",
        failure.reason
    );
}

#[tokio::test]
async fn a_failing_pre_start_counts_toward_the_intensity() {
    let tree = Tree::new();
    let outcome = tree
        .start(
            Strategy::OneForOne,
            3,
            vec![tree.probe("ok", 0), tree.probe("broken", 10)],
        )
        .await;

    let err = outcome.err().expect("the supervisor gives up");
    assert!(err.to_string().contains("gave up"), "{err}");
    // What had started was stopped again before giving up.
    assert_eq!(tree.log(), ["start:ok", "stop:ok"]);
}

#[tokio::test]
async fn shutdown_stops_children_in_reverse_start_order() {
    let tree = Tree::new();
    let children = vec![tree.probe("a", 0), tree.probe("b", 0), tree.probe("c", 0)];
    let (supervisor, board) = tree.start(Strategy::OneForOne, 5, children).await.unwrap();

    supervisor
        .stop_and_wait(None, Some(Duration::from_secs(5)))
        .await
        .unwrap();

    assert_eq!(
        tree.log(),
        ["start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"]
    );
    for name in ["a", "b", "c"] {
        assert_eq!(board.status(name), Some(ChildStatus::Stopped));
        assert!(tree.id(name).is_none());
    }
}

#[tokio::test]
async fn a_caller_waiting_on_an_actor_that_panics_gets_an_error_at_once() {
    let tree = Tree::new();
    let (_sup, board) = tree
        .start(Strategy::OneForOne, 5, vec![tree.probe("a", 0)])
        .await
        .unwrap();

    // A 30 s budget: waiting it out would be a `Timeout`, not this.
    let outcome = tree
        .directory
        .call::<ProbeMessage, (), _>("a", ProbeMessage::PanicHolding, Duration::from_secs(30))
        .await;

    assert_eq!(outcome, Err(CallError::Unavailable { actor: "a".into() }));
    eventually("a restarted", || running_with(&board, "a", 1)).await;
}

#[tokio::test]
async fn an_idempotent_call_waits_out_a_restart_instead_of_failing() {
    let tree = Tree::new();
    let (_sup, board) = tree
        .start(Strategy::OneForOne, 5, vec![tree.probe("a", 0)])
        .await
        .unwrap();
    let first = tree.id("a").unwrap();

    // The request queues behind the panic in the dying actor's mailbox and
    // is dropped with it; it is sent again to the next incarnation.
    tree.panic("a");
    let reply = tree
        .directory
        .call_idempotent::<ProbeMessage, String, _>("a", ProbeMessage::Echo, Duration::from_secs(5))
        .await;
    assert_eq!(reply, Ok("a".to_string()));
    eventually("a restarted", || running_with(&board, "a", 1)).await;
    assert_ne!(
        tree.id("a").unwrap(),
        first,
        "answered by a new incarnation"
    );

    // A name that is not in the tree still fails at once (`Unavailable`,
    // where waiting out the budget would be a `Timeout`).
    let missing = tree
        .directory
        .call_idempotent::<ProbeMessage, String, _>(
            "nobody",
            ProbeMessage::Echo,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        missing,
        Err(CallError::Unavailable {
            actor: "nobody".into()
        })
    );
}

#[tokio::test]
async fn dynamic_children_can_be_added_and_terminated() {
    let tree = Tree::new();
    let (supervisor, board) = tree
        .start(Strategy::OneForOne, 5, vec![tree.probe("a", 0)])
        .await
        .unwrap();

    let added = supervisor
        .call(
            |reply| SupervisorMessage::StartChild(tree.probe("d", 0), reply),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(added.is_ok());
    eventually("d running", || {
        board.status("d") == Some(ChildStatus::Running)
    })
    .await;
    let duplicate = supervisor
        .call(
            |reply| SupervisorMessage::StartChild(tree.probe("d", 0), reply),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(duplicate, Err(SupervisorError::DuplicateChild(_))));

    supervisor
        .call(
            |reply| SupervisorMessage::TerminateChild("d".into(), reply),
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(board.status("d"), None);
    assert!(tree.id("d").is_none());
    assert_eq!(tree.log(), ["start:a", "start:d", "stop:d"]);
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let backoff = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(30),
    };
    let delays: Vec<u64> = (0..6)
        .map(|n| backoff.delay(n).as_millis() as u64)
        .collect();
    assert_eq!(delays, [0, 5, 10, 20, 30, 30]);
}

#[tokio::test]
async fn a_child_with_its_own_intensity_is_left_failed_without_escalating() {
    let tree = Tree::new();
    let own = Intensity {
        max_restarts: 2,
        period: Duration::from_secs(60),
    };
    let children = vec![
        tree.probe("steady", 0),
        tree.probe("looping", 0).own_intensity(own),
    ];
    // The supervisor itself allows only one restart: the child's three
    // would exceed it, were they counted against it.
    let (_sup, board) = tree.start(Strategy::OneForOne, 1, children).await.unwrap();
    let steady = tree.id("steady");

    for restarts in 1..=2 {
        tree.panic("looping");
        eventually("looping restarted", || {
            running_with(&board, "looping", restarts)
        })
        .await;
    }
    tree.panic("looping");
    eventually("looping left failed", || {
        board.status("looping") == Some(ChildStatus::Failed)
    })
    .await;
    let failure = board.last_failure("looping").unwrap();
    assert!(failure.reason.contains("gave up"), "{}", failure.reason);
    assert_eq!(tree.id("steady"), steady, "the sibling is untouched");
    assert_eq!(board.status("steady"), Some(ChildStatus::Running));
    // Callers are told why at once.
    let outcome = tree
        .directory
        .call::<ProbeMessage, String, _>("looping", ProbeMessage::Echo, Duration::from_secs(30))
        .await;
    assert!(
        matches!(outcome, Err(CallError::Failed { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        tree.metrics
            .supervision_events
            .with_label_values(&["looping", "give_up"])
            .get(),
        1
    );
}

#[tokio::test]
async fn a_failed_child_can_be_restarted_on_request() {
    let tree = Tree::new();
    let own = Intensity {
        max_restarts: 1,
        period: Duration::from_secs(60),
    };
    let (supervisor, board) = tree
        .start(
            Strategy::OneForOne,
            5,
            vec![tree.probe("c", 0).own_intensity(own)],
        )
        .await
        .unwrap();
    tree.panic("c");
    eventually("c restarted", || running_with(&board, "c", 1)).await;
    tree.panic("c");
    eventually("c failed", || {
        board.status("c") == Some(ChildStatus::Failed)
    })
    .await;

    supervisor
        .call(
            |reply| SupervisorMessage::RestartChild("c".into(), reply),
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    eventually("c running again", || {
        board.status("c") == Some(ChildStatus::Running)
    })
    .await;
    let echo = tree
        .directory
        .call::<ProbeMessage, String, _>("c", ProbeMessage::Echo, Duration::from_secs(30))
        .await;
    assert_eq!(echo, Ok("c".to_string()));
    // A fresh history: it may fail once more before it is given up on.
    tree.panic("c");
    eventually("c restarted after the manual restart", || {
        board.status("c") == Some(ChildStatus::Running) && board.restarts("c") == Some(3)
    })
    .await;
    let missing = supervisor
        .call(
            |reply| SupervisorMessage::RestartChild("nobody".into(), reply),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(missing, Err(SupervisorError::NoSuchChild(_))));
}

#[tokio::test]
async fn every_failure_and_restart_is_an_event_and_in_the_bounded_history() {
    let tree = Tree::new();
    let (_backlog, mut listener) = tree.directory.events().subscribe(0);
    let children = vec![tree.probe("a", 0), tree.probe("b", 1)];
    let (_sup, board) = tree.start(Strategy::OneForOne, 50, children).await.unwrap();
    eventually("b running", || running_with(&board, "b", 1)).await;

    // b refused its first start: failed, then restarted as incarnation 2.
    let kinds: Vec<(EventKind, u64)> = board
        .history("b")
        .iter()
        .map(|e| (e.kind, e.incarnation))
        .collect();
    assert_eq!(kinds, [(EventKind::Failed, 1), (EventKind::Restarted, 1)]);
    assert!(board.history("b")[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("refuses to start"));
    assert_eq!(board.incarnation("a"), 1);

    tree.panic("a");
    eventually("a restarted", || running_with(&board, "a", 1)).await;
    let history = board.history("a");
    let kinds: Vec<(EventKind, u64)> = history.iter().map(|e| (e.kind, e.incarnation)).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Started, 1),
            (EventKind::Failed, 1),
            (EventKind::Restarted, 2)
        ]
    );
    assert!(history[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("injected fault"));

    // The listener saw the same events, in order, with increasing seqs.
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = listener.recv().await.unwrap();
        seen.push(event);
    }
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    let about_a: Vec<EventKind> = seen
        .iter()
        .filter(|e| e.actor == "a")
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        about_a,
        [EventKind::Started, EventKind::Failed, EventKind::Restarted]
    );

    // The history keeps the newest events only.
    for n in 2..=15u64 {
        tree.panic("a");
        eventually("a restarted again", || running_with(&board, "a", n)).await;
    }
    let history = board.history("a");
    assert_eq!(history.len(), super::board::HISTORY);
    let last = history.last().unwrap();
    assert_eq!((last.kind, last.incarnation), (EventKind::Restarted, 16));
}
