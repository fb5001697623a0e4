//! Which processes of a scan belong to a project, and how:
//! - **managed**: inside one of the project's scopes (cgroups, or process groups);
//! - **stray**: ours, but outside containment: it carries the project's markers, or matches a
//!   service's discovery rules (command-line regexes, executable names), or holds a service's
//!   output pipe (the trail, see `trail`: whatever its cgroup, environment or argv[0]), or
//!   descends from such a process (the service is inherited down the tree);
//! - **foreign**: not ours, but holding a port a service declares, or matching the project
//!   while owned by another user (never adopted, never signalled).
//!
//! ccscope itself and its ancestors are never classified: nothing acts on its own caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use regex::Regex;
use serde::Serialize;

use super::scan::{ScannedProcess, Snapshot};
use super::trail::Trail;
use crate::config::{Config, Launch};
use crate::contain::ScopeHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Managed,
    Stray,
    Foreign,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Managed => "managed",
            Class::Stray => "stray",
            Class::Foreign => "foreign",
        }
    }
}

/// A process of (or in the way of) the project, and why it is classified so.
#[derive(Debug, Clone, Serialize)]
pub struct Classified {
    pub class: Class,
    pub pid: i32,
    pub start_time: u64,
    pub ppid: i32,
    pub uid: u32,
    /// The service it belongs to (managed, stray) or whose port it holds (foreign).
    pub service: Option<String>,
    pub command_line: String,
    /// TCP and UDP ports it listens on.
    pub ports: Vec<u16>,
    pub cgroup: Option<String>,
    /// The scope it is in (managed).
    pub scope: Option<String>,
    pub age_s: Option<u64>,
    pub reason: String,
}

/// The project's scopes as found, each with its processes (the process-group backend has no
/// cgroup, only members).
pub struct Scopes<'a> {
    pub scopes: &'a [(ScopeHandle, Vec<i32>)],
    /// The cgroup v2 mount, to compare scope directories with /proc/PID/cgroup.
    pub v2_mount: Option<&'a Path>,
}

struct Rules {
    service: String,
    cmdline: Vec<Regex>,
    exe: Vec<String>,
}

fn rules(config: &Config) -> Vec<Rules> {
    config
        .services
        .values()
        .map(|s| Rules {
            service: s.name.clone(),
            cmdline: s
                .discover
                .cmdline
                .iter()
                .filter_map(|r| Regex::new(r).ok())
                .collect(),
            exe: s.discover.exe.clone(),
        })
        .collect()
}

/// Ports each service declares (its own and its containers' host ports), to the service.
fn declared_ports(config: &Config) -> HashMap<u16, String> {
    let mut ports = HashMap::new();
    for s in config.services.values() {
        for p in &s.ports {
            ports.insert(*p, s.name.clone());
        }
        if let Launch::Docker(d) = &s.launch {
            for m in &d.ports {
                ports.insert(m.host, s.name.clone());
            }
        }
    }
    ports
}

/// This process and its ancestors.
pub fn protected(snapshot: &Snapshot) -> BTreeSet<i32> {
    let mut protected = BTreeSet::new();
    let mut pid = std::process::id() as i32;
    while pid > 1 && protected.insert(pid) {
        match snapshot.processes.get(&pid) {
            Some(p) => pid = p.ppid,
            None => break,
        }
    }
    protected
}

/// What classification asks of the live system beyond the snapshot (unit tests answer with a
/// fake).
pub trait Probe {
    /// Whether the process is plainly ours (see [`owned_by`]).
    fn owned_by(&self, p: &ScannedProcess, me: u32) -> bool;
    /// The inodes among `pid`'s open descriptors that `trail` wants.
    fn held(&self, pid: i32, trail: &Trail) -> Vec<u64>;
}

/// The real /proc.
pub struct Live;

impl Probe for Live {
    fn owned_by(&self, p: &ScannedProcess, me: u32) -> bool {
        owned_by(p, me)
    }

    fn held(&self, pid: i32, trail: &Trail) -> Vec<u64> {
        super::scan::held_inodes(Path::new("/proc"), pid, |i| trail.wants(i))
    }
}

/// Classifies every process of `snapshot` that concerns `config`'s project, following the
/// trail of the scopes' forwarders as read now.
pub fn classify(snapshot: &Snapshot, config: &Config, scopes: &Scopes<'_>) -> Vec<Classified> {
    let trail = Trail::read(Path::new("/proc"), scopes.scopes);
    classify_traced(snapshot, config, scopes, &trail)
}

/// The same, with the trail read earlier (`stop` reads it before anything is signalled: a
/// killed forwarder leaves none).
pub fn classify_traced(
    snapshot: &Snapshot,
    config: &Config,
    scopes: &Scopes<'_>,
    trail: &Trail,
) -> Vec<Classified> {
    classify_with(snapshot, config, scopes, trail, &Live)
}

/// The same, with the live system's answers given.
pub fn classify_with(
    snapshot: &Snapshot,
    config: &Config,
    scopes: &Scopes<'_>,
    trail: &Trail,
    probe: &dyn Probe,
) -> Vec<Classified> {
    let project = config.project.name.as_str();
    let me = crate::proc::sys::euid();
    let protected = protected(snapshot);
    let rules = rules(config);
    let declared = declared_ports(config);
    // Managed: a scope's cgroup, as /proc/PID/cgroup names it, or a process group's member.
    let mut scope_of: HashMap<i32, &ScopeHandle> = HashMap::new();
    let mut cgroups: Vec<(String, &ScopeHandle)> = Vec::new();
    for (scope, pids) in scopes.scopes {
        match (&scope.cgroup, scopes.v2_mount) {
            (Some(dir), Some(mount)) => {
                if let Ok(rel) = dir.strip_prefix(mount) {
                    cgroups.push((format!("/{}", rel.display()), scope));
                }
            }
            _ => {
                for pid in pids {
                    scope_of.insert(*pid, scope);
                }
            }
        }
    }
    let in_scope = |p: &ScannedProcess| -> Option<&ScopeHandle> {
        if let Some(s) = scope_of.get(&p.pid) {
            return Some(*s);
        }
        let cg = p.cgroup.as_deref()?;
        cgroups
            .iter()
            .find(|(rel, _)| cg == rel || cg.starts_with(&format!("{rel}/")))
            .map(|(_, s)| *s)
    };

    let mut found: BTreeMap<i32, Classified> = BTreeMap::new();
    let entry = |p: &ScannedProcess,
                 class: Class,
                 service: Option<String>,
                 scope: Option<String>,
                 reason: String| Classified {
        class,
        pid: p.pid,
        start_time: p.start_time,
        ppid: p.ppid,
        uid: p.uid,
        service,
        command_line: p.command_line.clone(),
        ports: ports_of(p),
        cgroup: p.cgroup.clone(),
        scope,
        age_s: crate::proc::process_age(p.start_time),
        reason,
    };
    for p in snapshot.processes.values() {
        if protected.contains(&p.pid) {
            continue;
        }
        if let Some(scope) = in_scope(p) {
            let reason = format!("inside {}", scope.display_name());
            found.insert(
                p.pid,
                entry(
                    p,
                    Class::Managed,
                    Some(scope.service.clone()),
                    Some(scope.display_name()),
                    reason,
                ),
            );
            continue;
        }
        let matched = match &p.markers {
            // Another project's: its markers say so, whatever its command line looks like.
            Some(m) if m.project != project => None,
            Some(m) => Some((
                m.service.clone(),
                format!(
                    "carries CCSCOPE_PROJECT={project}{} outside every scope",
                    m.service
                        .as_ref()
                        .map_or(String::new(), |s| format!(" (service {s})"))
                ),
            )),
            // A scope of this project that is another user's (their environment is closed
            // to us, their cgroup is not): theirs, and said so.
            None if !probe.owned_by(p, me) && in_project_cgroup(p, project) => {
                Some((None, "it runs in a scope of this project".to_string()))
            }
            // Another project's scope holds it (it was adopted there, say): not ours by rule.
            None if in_any_ccscope_cgroup(p) => None,
            None => rules.iter().find_map(|r| {
                if let Some(re) = r.cmdline.iter().find(|re| re.is_match(&p.command_line)) {
                    return Some((
                        Some(r.service.clone()),
                        format!(
                            "its command line matches /{}/, a discover rule of {}",
                            re.as_str(),
                            r.service
                        ),
                    ));
                }
                let exe = p.exe.as_deref().unwrap_or(&p.comm);
                r.exe.iter().any(|e| e == exe).then(|| {
                    (
                        Some(r.service.clone()),
                        format!("its executable `{exe}` is a discover rule of {}", r.service),
                    )
                })
            }),
        };
        if let Some((service, reason)) = matched {
            let (class, reason) = if probe.owned_by(p, me) {
                (Class::Stray, reason)
            } else {
                (
                    Class::Foreign,
                    format!("{reason}, but it belongs to uid {} (not ours)", p.uid),
                )
            };
            found.insert(p.pid, entry(p, class, service, None, reason));
        }
    }
    // Holders of a service's output pipe outside the project's scopes are the service's,
    // whatever their cgroup, environment or argv[0] (the pipe beats markers). Only our uid's
    // processes that started no earlier than the oldest service can hold one: only their
    // descriptors are read. Another user's never are.
    if let Some(since) = trail.since().filter(|_| !trail.is_empty()) {
        let mut candidates: Vec<&ScannedProcess> = snapshot
            .processes
            .values()
            .filter(|p| {
                p.uid == me
                    && p.start_time >= since
                    && !protected.contains(&p.pid)
                    && !found.contains_key(&p.pid)
                    && in_scope(p).is_none()
                    // A kernel thread has no descriptors.
                    && !(p.exe.is_none() && p.command_line.is_empty())
            })
            .collect();
        candidates.sort_by_key(|p| p.pid);
        for p in candidates {
            let held = probe.held(p.pid, trail);
            let Some(channel) = trail.judge(&held) else {
                continue;
            };
            if probe.owned_by(p, me) {
                let service = Some(channel.service.clone());
                let reason = channel.reason();
                found.insert(p.pid, entry(p, Class::Stray, service, None, reason));
            }
        }
    }
    // Descendants of strays are strays of the same service. The walk stops at a process
    // that is not plainly ours (another uid, another project's markers, inside any ccscope
    // scope or cgroup): neither it nor anything below it is inherited.
    let strays: Vec<i32> = found
        .values()
        .filter(|c| c.class == Class::Stray)
        .map(|c| c.pid)
        .collect();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in snapshot.processes.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    for root in strays {
        let service = found[&root].service.clone();
        let root_start = snapshot.processes[&root].start_time;
        let mut stack: Vec<i32> = children.get(&root).cloned().unwrap_or_default();
        while let Some(pid) = stack.pop() {
            let Some(p) = snapshot.processes.get(&pid) else {
                continue;
            };
            // A child cannot be older than its parent: an older one hangs off a reused pid.
            let inherits = p.start_time >= root_start
                && !protected.contains(&pid)
                && in_scope(p).is_none()
                && !in_any_ccscope_cgroup(p)
                && p.markers.as_ref().is_none_or(|m| m.project == project)
                && probe.owned_by(p, me);
            if !inherits || found.get(&pid).is_some_and(|c| c.class != Class::Stray) {
                continue;
            }
            stack.extend(children.get(&pid).cloned().unwrap_or_default());
            if found.contains_key(&pid) {
                continue;
            }
            let reason = format!("descends from stray pid {root}");
            found.insert(pid, entry(p, Class::Stray, service.clone(), None, reason));
        }
    }
    // Foreign: not ours, in the way of a declared port.
    for p in snapshot.processes.values() {
        if found.contains_key(&p.pid) || protected.contains(&p.pid) {
            continue;
        }
        if let Some((port, service)) = ports_of(p)
            .into_iter()
            .find_map(|port| declared.get(&port).map(|s| (port, s.clone())))
        {
            let reason =
                format!("not this project's, but listens on port {port}, which {service} declares");
            found.insert(p.pid, entry(p, Class::Foreign, Some(service), None, reason));
        }
    }
    let mut all: Vec<Classified> = found.into_values().collect();
    all.sort_by(|a, b| (a.class, &a.service, a.pid).cmp(&(b.class, &b.service, b.pid)));
    all
}

/// A fresh scan of the project: its scopes from every backend, one procfs pass, and the
/// classification. Returns the snapshot too (for subtrees) and how many processes it skipped.
pub async fn discover(
    config: &Config,
    backends: &[crate::contain::AnyContainment],
) -> (Snapshot, Vec<(ScopeHandle, Vec<i32>)>, Vec<Classified>) {
    use crate::contain::Containment;
    let mut scopes = Vec::new();
    for backend in backends {
        for scope in backend.list(&config.project.name).await.unwrap_or_default() {
            let pids = backend.processes(&scope).await.unwrap_or_default();
            scopes.push((scope, pids));
        }
    }
    let snapshot = super::scan::scan(Path::new("/proc"));
    let mount = crate::contain::cgroup::v2_mount().ok().flatten();
    let classified = classify(
        &snapshot,
        config,
        &Scopes {
            scopes: &scopes,
            v2_mount: mount.as_deref(),
        },
    );
    (snapshot, scopes, classified)
}

/// Whether the process is plainly ours: the owner of /proc/PID (its effective uid, but root
/// for a non-dumpable process) and every uid of /proc/PID/status (real, effective, saved,
/// filesystem) are ours.
pub fn owned_by(p: &ScannedProcess, me: u32) -> bool {
    p.uid == me && status_uids_are(p.pid, me)
}

/// The same for a live process known by its pid alone, read from /proc now (false if it is
/// gone or cannot be read).
pub fn pid_owned_by(pid: i32, me: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == me)
        && status_uids_are(pid, me)
}

fn status_uids_are(pid: i32, me: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().all(|u| u.parse() == Ok(me)))
}

/// Whether the process sits in a cgroup that ccscope made for some project (a
/// `ccscope-….scope` unit, or under a `ccscope` directory).
pub fn in_any_ccscope_cgroup(p: &ScannedProcess) -> bool {
    p.cgroup.as_deref().is_some_and(|cg| {
        cg.split('/').any(|part| {
            part == "ccscope" || (part.starts_with("ccscope-") && part.ends_with(".scope"))
        })
    })
}

/// Whether the process's cgroup is one of `project`'s: under its slice
/// (`ccscope-<project>.slice`, systemd) or its directory (`ccscope/<project>`, cgroupfs).
fn in_project_cgroup(p: &ScannedProcess, project: &str) -> bool {
    let slice = crate::contain::slice_name(project);
    p.cgroup.as_deref().is_some_and(|cg| {
        let parts: Vec<&str> = cg.split('/').collect();
        parts.iter().any(|part| *part == slice)
            || parts
                .windows(2)
                .any(|w| w[0] == "ccscope" && w[1] == project)
    })
}

fn ports_of(p: &ScannedProcess) -> Vec<u16> {
    let mut ports: Vec<u16> = p.listening.iter().filter_map(|l| l.port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::scan::Listening;
    use crate::discover::trail::ForwarderSeen;

    /// Owned means the uid matches; each pid holds the inodes given.
    #[derive(Default)]
    struct Fake {
        held: HashMap<i32, Vec<u64>>,
    }

    impl Probe for Fake {
        fn owned_by(&self, p: &ScannedProcess, me: u32) -> bool {
            p.uid == me
        }

        fn held(&self, pid: i32, trail: &Trail) -> Vec<u64> {
            let held = self.held.get(&pid).cloned().unwrap_or_default();
            held.into_iter().filter(|i| trail.wants(*i)).collect()
        }
    }

    fn process(pid: i32, ppid: i32, uid: u32, cmd: &str) -> ScannedProcess {
        ScannedProcess {
            pid,
            start_time: 100 + pid as u64,
            ppid,
            uid,
            exe: cmd.split(' ').next().map(str::to_string),
            comm: "x".into(),
            command_line: cmd.into(),
            cgroup: Some("/user.slice/session-1.scope".into()),
            markers: None,
            listening: Vec::new(),
        }
    }

    fn config() -> Config {
        crate::config::parse_config(
            "[project]\nname = \"cc\"\n\
             [services.dashboard]\ncommand = [\"python3\", \"-m\", \"app\", \"dashboard\"]\nports = [8110]\n\
             discover = { cmdline = [\"app dashboard\"] }\n\
             [services.worker]\ncommand = [\"worker\"]\ndiscover = { exe = [\"bridge-worker\"] }\n",
            crate::config::ConfigSource::Profile("t".into()),
            Path::new("/"),
        )
        .unwrap()
    }

    #[test]
    fn classifies_managed_strays_descendants_and_foreign_holders() {
        let me = crate::proc::sys::euid();
        let mut snapshot = Snapshot::default();
        let mut add = |p: ScannedProcess| {
            snapshot.processes.insert(p.pid, p);
        };
        let mut managed = process(10, 1, me, "python3 -m app dashboard --port 8110");
        managed.cgroup = Some("/ccscope/cc/dashboard".into());
        add(managed);
        add(process(20, 1, me, "python3 -m app dashboard --port 9999"));
        add(process(21, 20, me, "sleep 100"));
        add(process(30, 1, me, "bridge-worker --loop"));
        let mut marked = process(40, 1, me, "sh -c stuff");
        marked.markers = Some(crate::proc::markers::Markers {
            project: "cc".into(),
            service: Some("worker".into()),
            run_id: None,
        });
        add(marked);
        let mut holder = process(50, 1, me, "nginx");
        holder.listening.push(Listening {
            protocol: "tcp",
            address: "0.0.0.0".into(),
            port: Some(8110),
            inode: 1,
        });
        add(holder);
        add(process(
            60,
            1,
            me + 1,
            "python3 -m app dashboard --port 7000",
        ));
        add(process(70, 1, me, "unrelated"));
        let mut elsewhere = process(80, 1, me, "python3 -m app dashboard --port 7100");
        elsewhere.markers = Some(crate::proc::markers::Markers {
            project: "other".into(),
            service: Some("dashboard".into()),
            run_id: None,
        });
        add(elsewhere);
        // Under the stray 20, a process of another project: neither it nor its child inherit.
        let mut nested = process(22, 20, me, "other-project-thing");
        nested.markers = Some(crate::proc::markers::Markers {
            project: "other".into(),
            service: None,
            run_id: None,
        });
        add(nested);
        add(process(23, 22, me, "its child"));
        let scope = ScopeHandle {
            backend: crate::contain::BackendKind::Cgroupfs,
            project: "cc".into(),
            service: "dashboard".into(),
            instance: None,
            unit: None,
            cgroup: Some("/sys/fs/cgroup/ccscope/cc/dashboard".into()),
            pgid: None,
            run_id: None,
        };
        let scopes = [(scope, vec![10])];
        let got = classify_with(
            &snapshot,
            &config(),
            &Scopes {
                scopes: &scopes,
                v2_mount: Some(Path::new("/sys/fs/cgroup")),
            },
            &Trail::default(),
            &Fake::default(),
        );
        let view: Vec<(i32, Class, Option<&str>)> = got
            .iter()
            .map(|c| (c.pid, c.class, c.service.as_deref()))
            .collect();
        assert_eq!(
            view,
            vec![
                (10, Class::Managed, Some("dashboard")),
                (20, Class::Stray, Some("dashboard")),
                (21, Class::Stray, Some("dashboard")),
                (30, Class::Stray, Some("worker")),
                (40, Class::Stray, Some("worker")),
                (50, Class::Foreign, Some("dashboard")),
                (60, Class::Foreign, Some("dashboard")),
            ]
        );
        let why = |pid: i32| got.iter().find(|c| c.pid == pid).unwrap().reason.clone();
        assert!(why(20).contains("/app dashboard/"), "{}", why(20));
        assert!(
            why(21).contains("descends from stray pid 20"),
            "{}",
            why(21)
        );
        assert!(why(30).contains("bridge-worker"), "{}", why(30));
        assert!(why(40).contains("CCSCOPE_PROJECT=cc"), "{}", why(40));
        assert!(why(50).contains("port 8110"), "{}", why(50));
        assert!(why(60).contains("uid"), "{}", why(60));
    }

    #[test]
    fn a_holder_of_a_services_output_pipe_is_its_stray_whatever_it_says_of_itself() {
        let me = crate::proc::sys::euid();
        let mut snapshot = Snapshot::default();
        let mut add = |pid: i32, ppid: i32, uid: u32, cmd: &str, start: u64, cgroup: &str| {
            let mut p = process(pid, ppid, uid, cmd);
            p.start_time = start;
            p.cgroup = Some(cgroup.into());
            p.exe = Some("sleep".into());
            snapshot.processes.insert(pid, p);
        };
        let scope_cg = "/ccscope/cc/worker";
        add(10, 1, me, "worker", 1000, scope_cg);
        add(
            11,
            1,
            me,
            "ccscope __journal-forward 23 25 10 - 22",
            1001,
            scope_cg,
        );
        // Escaped: another cgroup, no markers, a kernel thread's name.
        add(30, 1, me, "[kworker/u8:2] 300", 1500, "/elsewhere");
        add(31, 30, me, "sleep 5", 1600, "/elsewhere");
        // Holds the pipe but is older than the service: handed it, not forked with it.
        add(40, 1, me, "logger", 900, "/user.slice");
        // Another user's holder, and the supervisor (it reads the tap).
        add(50, 1, me + 1, "sleep 300", 1500, "/elsewhere");
        add(
            60,
            1,
            me,
            "ccscope run",
            990,
            "/system.slice/ccscope-cc.service",
        );
        add(
            61,
            1,
            me,
            "ccscope run",
            1200,
            "/system.slice/ccscope-cc.service",
        );
        add(70, 1, me, "unrelated", 1700, "/user.slice");
        let scope = ScopeHandle {
            backend: crate::contain::BackendKind::Cgroupfs,
            project: "cc".into(),
            service: "worker".into(),
            instance: None,
            unit: None,
            cgroup: Some("/sys/fs/cgroup/ccscope/cc/worker".into()),
            pgid: None,
            run_id: None,
        };
        let scopes = [(scope, vec![10, 11])];
        let mut trail = Trail::default();
        trail.add(
            "worker",
            &ForwarderSeen {
                out: Some("pipe:[500]".into()),
                err: Some("pipe:[501]".into()),
                tap: Some("pipe:[502]".into()),
                start_time: 1001,
                service_start_time: Some(1000),
            },
        );
        let fake = Fake {
            held: [
                (10, vec![500, 501]),
                (30, vec![500, 501]),
                (40, vec![500]),
                (50, vec![500]),
                (61, vec![502, 500]),
                (70, vec![7]),
            ]
            .into(),
        };
        let got = classify_with(
            &snapshot,
            &config(),
            &Scopes {
                scopes: &scopes,
                v2_mount: Some(Path::new("/sys/fs/cgroup")),
            },
            &trail,
            &fake,
        );
        let view: Vec<(i32, Class, Option<&str>)> = got
            .iter()
            .map(|c| (c.pid, c.class, c.service.as_deref()))
            .collect();
        assert_eq!(
            view,
            vec![
                (10, Class::Managed, Some("worker")),
                (11, Class::Managed, Some("worker")),
                (30, Class::Stray, Some("worker")),
                (31, Class::Stray, Some("worker")),
            ]
        );
        assert_eq!(
            got[2].reason,
            "holds the stdout pipe of service `worker` (pipe:[500]) outside every scope"
        );
        assert_eq!(got[3].reason, "descends from stray pid 30");
        // Nothing to follow: the same escapee is invisible.
        let blind = classify_with(
            &snapshot,
            &config(),
            &Scopes {
                scopes: &scopes,
                v2_mount: Some(Path::new("/sys/fs/cgroup")),
            },
            &Trail::default(),
            &fake,
        );
        assert!(blind.iter().all(|c| c.class == Class::Managed), "{blind:?}");
    }
}
