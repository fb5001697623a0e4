//! The supervisor's state feed: every change of a service's state, of the run's state, and
//! every audit event, as it happens, to whoever subscribed (`ccscope top` over the control
//! socket; D-Bus signals later). One `tokio::sync::broadcast` channel, published from the
//! driver's `apply` at the three moments state changes (`Effect::Record`, `Effect::RunState`,
//! `Effect::Audit`).
//!
//! With nobody subscribed a publish is one look at the receiver count: the event is not even
//! built, so an idle supervisor does no more work than before. A subscriber is given a
//! [`Snapshot`] first (made from the registry in the same turn of the driver's loop as its
//! subscription, so no change falls between the two), then each [`FeedEvent`] as one JSON
//! line. One that falls more than [`CAPACITY`] events behind is told [`FeedEvent::Lagged`] and
//! its stream ends: it subscribes again for a fresh snapshot.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::machine::AuditNote;
use crate::config::Config;
use crate::registry::{Registry, ServiceStateRecord};

/// The cgroup of a service's current instance, as the driver knows it.
pub(crate) type CgroupOf<'a> = &'a dyn Fn(&str) -> Option<&'a Path>;

/// How many events a subscriber may fall behind before its stream ends.
pub const CAPACITY: usize = 256;

/// How long one line may wait for a subscriber that does not read: then its stream ends
/// (and it stops counting as a subscriber).
pub const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One service as the supervisor sees it at one moment: the same fields whether it comes in a
/// snapshot or as a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub project: String,
    pub service: String,
    pub run_id: String,
    /// `pending`, `launching`, `starting`, `running`, `restarting`, `waiting`, `exited`,
    /// `failed`, `paused`, `stopping` or `stopped`.
    pub state: String,
    pub ready: bool,
    /// Restarts so far in this run.
    pub restarts: u32,
    pub main_pid: Option<i32>,
    /// The processes of its scope's cgroup now (its main pid alone where there is no cgroup
    /// to read, as with the process-group backend).
    pub pids: Vec<i32>,
    /// Its declared ports.
    pub ports: Vec<u16>,
    /// The last reason: why it is in this state (a failure, a restart), in words.
    pub reason: Option<String>,
    /// How its last process ended, e.g. `exit code 3` or `signal SIGKILL`.
    pub last_exit: Option<String>,
    /// Milliseconds since the Unix epoch: when it entered this state.
    pub since_ms: i64,
    /// The watched file whose change last restarted it (`watch`).
    pub trigger: Option<String>,
}

/// Everything at once: the first line a subscriber reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub project: String,
    pub run_id: String,
    pub supervisor_pid: i32,
    /// When the run started (milliseconds since the Unix epoch).
    pub started_at_ms: i64,
    /// How long the stack took to come up, once it has (milliseconds).
    pub startup_ms: Option<u64>,
    /// `running` or `stopping`.
    pub run_state: String,
    /// The containment backend's name (`systemd`, `cgroupfs`, `pgroup`).
    pub backend: String,
    /// The configured services, in the configuration's order; one not started yet in this run
    /// is `pending`.
    pub services: Vec<ServiceEvent>,
}

/// What a subscriber reads, one JSON object per line, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedEvent {
    /// The first line of a subscription.
    Snapshot(Snapshot),
    /// A service's state changed (its registry row was written).
    Service(ServiceEvent),
    /// The run's state changed (`running`, `stopping`, `ended`).
    Run {
        project: String,
        run_id: String,
        state: String,
    },
    /// The stack came up: every service started is ready.
    StackUp {
        project: String,
        run_id: String,
        startup_ms: u64,
    },
    /// An audit event was written (crashes, restarts, who asked for what).
    Audit {
        project: String,
        service: Option<String>,
        /// Its `CCSCOPE_EVENT` name, e.g. `service.crashed`.
        event: String,
        message: String,
        /// Milliseconds since the Unix epoch.
        at_ms: i64,
    },
    /// The subscriber fell this many events behind; its stream ends here.
    Lagged { missed: u64 },
}

/// A subscriber's end of the channel.
pub(crate) type Receiver = broadcast::Receiver<Arc<FeedEvent>>;

/// The publishing side, held by the driver.
#[derive(Debug)]
pub(crate) struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
    /// How long the stack took to come up, once it has: the one thing a snapshot needs that
    /// the registry does not keep (set once per run).
    startup_ms: std::cell::Cell<Option<u64>>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub(crate) fn new() -> Feed {
        Feed {
            tx: broadcast::Sender::new(CAPACITY),
            startup_ms: std::cell::Cell::new(None),
        }
    }

    /// `Effect::Record`: a service's state was written to the registry.
    pub(crate) fn service_changed(
        &self,
        record: &ServiceStateRecord,
        config: &Config,
        cgroup_of: CgroupOf<'_>,
    ) {
        self.publish(|| {
            let pids = scope_pids(cgroup_of(&record.service), record.main_pid);
            FeedEvent::Service(service_event(
                record,
                pids,
                ports_of(config, &record.service),
            ))
        });
    }

    /// `Effect::RunState`: the run's state was written.
    pub(crate) fn run_changed(&self, project: &str, run_id: &str, state: &str) {
        self.publish(|| FeedEvent::Run {
            project: project.to_string(),
            run_id: run_id.to_string(),
            state: state.to_string(),
        });
    }

    /// `Effect::Audit`: an audit event is being written.
    pub(crate) fn audited(&self, project: &str, note: &AuditNote) {
        self.publish(|| FeedEvent::Audit {
            project: project.to_string(),
            service: note.service.clone(),
            event: note.event.to_string(),
            message: note.message.clone(),
            at_ms: now_ms(),
        });
    }

    /// `Effect::StackUp`: how long the stack took to come up since the run started (its
    /// record's start), kept for snapshots (once per run, with or without subscribers) and
    /// told.
    pub(crate) fn stack_up(&self, registry: &Registry, project: &str, run_id: &str) {
        if self.startup_ms.get().is_some() {
            return;
        }
        let Some(run) = registry.run(run_id).ok().flatten() else {
            return;
        };
        let startup_ms = (now_ms() - run.started_at_ms).max(0) as u64;
        self.startup_ms.set(Some(startup_ms));
        self.publish(|| FeedEvent::StackUp {
            project: project.to_string(),
            run_id: run_id.to_string(),
            startup_ms,
        });
    }

    /// A new subscriber's snapshot (from the registry) and receiver, made in one turn of the
    /// driver's loop so that no change falls between them.
    pub(crate) fn subscribe_with(
        &self,
        registry: &Registry,
        config: &Config,
        run_id: &str,
        backend: &str,
        cgroup_of: CgroupOf<'_>,
    ) -> (Snapshot, Receiver) {
        let project = &config.project.name;
        let records = registry.service_states(project).unwrap_or_default();
        let run = registry.run(run_id).ok().flatten();
        let snapshot = snapshot(SnapshotParts {
            project,
            run_id,
            started_at_ms: run.as_ref().map_or(0, |r| r.started_at_ms),
            startup_ms: self.startup_ms.get(),
            run_state: run.as_ref().map_or("running", |r| r.state.as_str()),
            backend,
            services: config
                .services
                .iter()
                .map(|(name, s)| (name.as_str(), s.ports.clone()))
                .collect(),
            records: &records,
            pids_of: &|name, main| scope_pids(cgroup_of(name), main),
        });
        (snapshot, self.subscribe())
    }

    /// Whether anyone listens: only then is an event worth building.
    pub(crate) fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends the event `make` builds, if anyone listens; without a subscriber `make` is not
    /// called.
    pub(crate) fn publish(&self, make: impl FnOnce() -> FeedEvent) {
        if self.wanted() {
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    /// A new subscriber's receiver: it gets every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.tx.subscribe()
    }
}

/// A service's event from its registry row, with its scope's processes and declared ports.
pub(crate) fn service_event(
    record: &ServiceStateRecord,
    pids: Vec<i32>,
    ports: Vec<u16>,
) -> ServiceEvent {
    ServiceEvent {
        project: record.project.clone(),
        service: record.service.clone(),
        run_id: record.run_id.clone(),
        state: record.state.clone(),
        ready: record.ready,
        restarts: record.restarts,
        main_pid: record.main_pid,
        pids,
        ports,
        reason: record.message.clone(),
        last_exit: record.last_exit.clone(),
        since_ms: record.since_ms,
        trigger: record.trigger.clone(),
    }
}

/// A service's declared ports.
fn ports_of(config: &Config, service: &str) -> Vec<u16> {
    config
        .services
        .get(service)
        .map(|s| s.ports.clone())
        .unwrap_or_default()
}

/// The processes of a scope: its cgroup's `cgroup.procs` where it has a cgroup, else its
/// main process alone.
pub(crate) fn scope_pids(cgroup: Option<&Path>, main_pid: Option<i32>) -> Vec<i32> {
    let listed = cgroup.and_then(|c| crate::contain::cgroup::Cgroup::at(c).procs().ok());
    listed.unwrap_or_else(|| main_pid.into_iter().collect())
}

/// What a snapshot is made of, gathered by the driver.
pub(crate) struct SnapshotParts<'a> {
    pub project: &'a str,
    pub run_id: &'a str,
    pub started_at_ms: i64,
    pub startup_ms: Option<u64>,
    pub run_state: &'a str,
    pub backend: &'a str,
    /// The configured services in order, with their declared ports.
    pub services: Vec<(&'a str, Vec<u16>)>,
    /// The registry's rows of the project (rows of earlier runs are not this run's word).
    pub records: &'a [ServiceStateRecord],
    /// The processes of a service's current scope.
    pub pids_of: &'a dyn Fn(&str, Option<i32>) -> Vec<i32>,
}

/// The snapshot a new subscriber is given.
pub(crate) fn snapshot(parts: SnapshotParts<'_>) -> Snapshot {
    let services = parts
        .services
        .into_iter()
        .map(|(name, ports)| {
            let record = parts
                .records
                .iter()
                .find(|r| r.service == name && r.run_id == parts.run_id);
            match record {
                Some(r) => service_event(r, (parts.pids_of)(name, r.main_pid), ports),
                None => ServiceEvent {
                    project: parts.project.to_string(),
                    service: name.to_string(),
                    run_id: parts.run_id.to_string(),
                    state: "pending".into(),
                    ready: false,
                    restarts: 0,
                    main_pid: None,
                    pids: (parts.pids_of)(name, None),
                    ports,
                    reason: None,
                    last_exit: None,
                    since_ms: parts.started_at_ms,
                    trigger: None,
                },
            }
        })
        .collect();
    Snapshot {
        project: parts.project.to_string(),
        run_id: parts.run_id.to_string(),
        supervisor_pid: std::process::id() as i32,
        started_at_ms: parts.started_at_ms,
        startup_ms: parts.startup_ms,
        run_state: parts.run_state.to_string(),
        backend: parts.backend.to_string(),
        services,
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes a subscription to `write`: the snapshot, then each event as it comes, one JSON line
/// each, until the subscriber goes away, falls behind, stops reading for [`WRITE_DEADLINE`],
/// or the supervisor ends.
pub(crate) async fn stream_to(
    mut write: impl tokio::io::AsyncWrite + Unpin,
    mut read: impl tokio::io::AsyncRead + Unpin,
    snapshot: Snapshot,
    mut events: broadcast::Receiver<Arc<FeedEvent>>,
) {
    use tokio::io::AsyncReadExt;
    let line = |event: &FeedEvent| {
        let mut text = serde_json::to_vec(event).unwrap_or_default();
        text.push(b'\n');
        text
    };
    let snapshot = line(&FeedEvent::Snapshot(snapshot));
    if !send(&mut write, &snapshot).await {
        return;
    }
    // The subscriber sends nothing more: its end closing (a read of 0) is it going away.
    let mut scratch = [0u8; 64];
    loop {
        let event = tokio::select! {
            received = events.recv() => received,
            gone = read.read(&mut scratch) => match gone {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
        };
        let text = match event {
            Ok(event) => line(&event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                send(&mut write, &line(&FeedEvent::Lagged { missed })).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !send(&mut write, &text).await {
            return;
        }
    }
}

/// Writes one line within [`WRITE_DEADLINE`]; false when it could not.
async fn send(write: &mut (impl tokio::io::AsyncWrite + Unpin), line: &[u8]) -> bool {
    use tokio::io::AsyncWriteExt;
    matches!(
        tokio::time::timeout(WRITE_DEADLINE, write.write_all(line)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(service: &str, run_id: &str, state: &str) -> ServiceStateRecord {
        ServiceStateRecord {
            project: "demo".into(),
            service: service.into(),
            run_id: run_id.into(),
            state: state.into(),
            ready: state == "running",
            restarts: 2,
            main_pid: Some(41),
            last_exit: Some("exit code 1".into()),
            message: Some("exited with code 1".into()),
            since_ms: 5,
            updated_at_ms: 6,
            trigger: None,
        }
    }

    #[test]
    fn nothing_is_built_without_a_subscriber_and_everything_after_one() {
        let feed = Feed::new();
        let mut built = 0;
        feed.publish(|| {
            built += 1;
            FeedEvent::Lagged { missed: 0 }
        });
        assert_eq!(built, 0, "no subscriber: the event is not even made");
        let mut rx = feed.subscribe();
        feed.publish(|| FeedEvent::Lagged { missed: 7 });
        assert_eq!(*rx.try_recv().unwrap(), FeedEvent::Lagged { missed: 7 });
        drop(rx);
        assert!(!feed.wanted());
    }

    #[test]
    fn a_snapshot_takes_this_runs_rows_and_calls_the_rest_pending() {
        let records = [
            record("db", "r1", "running"),
            record("web", "old", "failed"),
        ];
        let snap = snapshot(SnapshotParts {
            project: "demo",
            run_id: "r1",
            started_at_ms: 100,
            startup_ms: None,
            run_state: "running",
            backend: "cgroupfs",
            services: vec![("db", vec![5432]), ("web", vec![])],
            records: &records,
            pids_of: &|name, main| match name {
                "db" => vec![main.unwrap(), 42],
                _ => vec![],
            },
        });
        let [db, web] = &snap.services[..] else {
            panic!("two services")
        };
        assert_eq!(
            (
                db.state.as_str(),
                db.ready,
                db.pids.clone(),
                db.ports.clone()
            ),
            ("running", true, vec![41, 42], vec![5432])
        );
        assert_eq!(db.reason.as_deref(), Some("exited with code 1"));
        assert_eq!((web.state.as_str(), web.restarts), ("pending", 0));
    }

    #[test]
    fn events_travel_as_json_lines_tagged_by_kind() {
        let event = FeedEvent::Service(service_event(
            &record("db", "r1", "failed"),
            vec![],
            vec![1],
        ));
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            text.starts_with(r#"{"kind":"service","project":"demo""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<FeedEvent>(&text).unwrap(), event);
        let run = FeedEvent::Run {
            project: "p".into(),
            run_id: "r".into(),
            state: "stopping".into(),
        };
        let back: FeedEvent = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back, run);
    }

    #[test]
    fn cgroup_procs_name_the_pids_and_the_main_pid_stands_in_without_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "10\n11\n").unwrap();
        assert_eq!(scope_pids(Some(dir.path()), Some(10)), vec![10, 11]);
        assert_eq!(scope_pids(None, Some(9)), vec![9]);
        assert_eq!(scope_pids(None, None), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn a_subscription_is_a_snapshot_then_events_until_the_subscriber_goes() {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let feed = Feed::new();
        let (server, client) = tokio::net::UnixStream::pair().unwrap();
        let (read, write) = server.into_split();
        let snap = snapshot(SnapshotParts {
            project: "demo",
            run_id: "r1",
            started_at_ms: 1,
            startup_ms: Some(3),
            run_state: "running",
            backend: "cgroupfs",
            services: vec![],
            records: &[],
            pids_of: &|_, _| vec![],
        });
        let served = tokio::spawn(stream_to(write, read, snap.clone(), feed.subscribe()));
        let (client_read, client_write) = client.into_split();
        let mut lines = BufReader::new(client_read).lines();
        let first: FeedEvent =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(first, FeedEvent::Snapshot(snap));
        feed.publish(|| FeedEvent::StackUp {
            project: "demo".into(),
            run_id: "r1".into(),
            startup_ms: 3,
        });
        let second: FeedEvent =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(matches!(second, FeedEvent::StackUp { startup_ms: 3, .. }));
        drop(client_write);
        drop(lines);
        tokio::time::timeout(std::time::Duration::from_secs(10), served)
            .await
            .expect("the stream ended when its subscriber went")
            .unwrap();
        assert!(!feed.wanted(), "its receiver is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_does_not_read_is_let_go_after_the_write_deadline() {
        let feed = Feed::new();
        // A 16-byte pipe nobody reads: the snapshot line cannot go through.
        let (write, _unread) = tokio::io::duplex(16);
        let (read, _open) = tokio::io::duplex(16);
        let snap = snapshot(SnapshotParts {
            project: "demo",
            run_id: "r1",
            started_at_ms: 1,
            startup_ms: None,
            run_state: "running",
            backend: "cgroupfs",
            services: vec![],
            records: &[],
            pids_of: &|_, _| vec![],
        });
        let began = tokio::time::Instant::now();
        stream_to(write, read, snap, feed.subscribe()).await;
        assert!(began.elapsed() >= WRITE_DEADLINE);
        assert!(!feed.wanted(), "it no longer counts as a subscriber");
    }
}
