//! The kinds of audit event, each with its fixed `MESSAGE_ID`, a default priority, and the
//! catalogue text (`Subject`, a body with `@FIELD@` references) that `journalctl -x` and
//! `ccscope audit -x` show. `units/ccscope.catalog` is written from this table (a test keeps
//! them in step).

use super::Priority;

/// One kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `CCSCOPE_EVENT`.
    pub name: &'static str,
    /// 128 bits in hex, as journald's `MESSAGE_ID` takes them.
    pub message_id: &'static str,
    pub priority: Priority,
    pub subject: &'static str,
    pub body: &'static str,
}

/// Where the catalogue's `Documentation:` line points.
pub const DOCUMENTATION: &str = "man:ccscope(1)";

pub const KINDS: &[Kind] = &[
    Kind {
        name: "run.started",
        message_id: "27591b5ddc0246068f15ee4e364aa0ab",
        priority: Priority::Notice,
        subject: "A ccscope supervisor started the stack of @CCSCOPE_PROJECT@",
        body: "The supervisor (pid @CCSCOPE_ACTOR_PID@) took the project's lock and starts its services in the order @CCSCOPE_ORDER@. Its run id @CCSCOPE_RUN_ID@ is on every entry it writes.",
    },
    Kind {
        name: "run.ready",
        message_id: "9a9b4135701b4a69a0fa32307e401d2d",
        priority: Priority::Notice,
        subject: "The stack of @CCSCOPE_PROJECT@ is ready",
        body: "Every selected service is up: @CCSCOPE_REASON@",
    },
    Kind {
        name: "run.start_failed",
        message_id: "5ec7cfef24c040edac6044a5f145acb2",
        priority: Priority::Error,
        subject: "The stack of @CCSCOPE_PROJECT@ did not start",
        body: "Service @CCSCOPE_SERVICE@ did not come up: @CCSCOPE_REASON@. What had started was stopped again; `ccscope run` in the foreground shows its last output.",
    },
    Kind {
        name: "run.stopped",
        message_id: "59b464d60e104a8590e9d8488c964b83",
        priority: Priority::Notice,
        subject: "The supervisor of @CCSCOPE_PROJECT@ ended",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.pending",
        message_id: "6e0eeba67a3947a6a063c5ff3eeeb45d",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ waits to be started",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.launching",
        message_id: "ab1f0c8cac8d441ea318cacecd7d651e",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ is being launched",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.starting",
        message_id: "d99822fc05fc480ba67d42c1ef401c73",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ was launched and waits for its readiness probe",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.running",
        message_id: "971ea1b441544d3c967c440cc330145c",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ is running",
        body: "@CCSCOPE_SERVICE@ of @CCSCOPE_PROJECT@ is up: @CCSCOPE_REASON@",
    },
    Kind {
        name: "service.restarting",
        message_id: "ce13c06e252a4c5c97c5ac26449da972",
        priority: Priority::Warning,
        subject: "@CCSCOPE_SERVICE@ ended and will be restarted",
        body: "@CCSCOPE_SERVICE@ of @CCSCOPE_PROJECT@ ended: @CCSCOPE_REASON@. Its restart policy starts it again after its backoff; `ccscope logs @CCSCOPE_SERVICE@` shows what it printed.",
    },
    Kind {
        name: "service.waiting",
        message_id: "d2669f545dfc4ec5b3346a1750f31bb9",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ waits for a dependency",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.exited",
        message_id: "95f7f65bc7964bbfbd3f8b4ad66669d0",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ ran to completion",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.failed",
        message_id: "84f2982a1c5a41cc9a559694a2fe0870",
        priority: Priority::Error,
        subject: "@CCSCOPE_SERVICE@ failed and is not restarted",
        body: "@CCSCOPE_SERVICE@ of @CCSCOPE_PROJECT@ failed: @CCSCOPE_REASON@. `ccscope logs @CCSCOPE_SERVICE@` shows its output; `ccscope start @CCSCOPE_SERVICE@` starts it again.",
    },
    Kind {
        name: "service.stopping",
        message_id: "e6b04be2a5bf4190b2235bc728a6dd3a",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ is being stopped",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.stopped",
        message_id: "3f9ccf0ff0e647fcb2490c6e8f33cce7",
        priority: Priority::Info,
        subject: "@CCSCOPE_SERVICE@ was stopped",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "service.paused",
        message_id: "f5781a070f5548debe2c8347e3f5c7a2",
        priority: Priority::Notice,
        subject: "@CCSCOPE_SERVICE@ was paused",
        body: "Its cgroup is frozen: @CCSCOPE_REASON@. `ccscope resume @CCSCOPE_SERVICE@` thaws it.",
    },
    Kind {
        name: "control.request",
        message_id: "6f44fc59b67143cc8676143d4a93974a",
        priority: Priority::Notice,
        subject: "A client asked the supervisor of @CCSCOPE_PROJECT@ to @CCSCOPE_VERB@",
        body: "uid @CCSCOPE_ACTOR_UID@, pid @CCSCOPE_ACTOR_PID@ (@CCSCOPE_ACTOR_CMDLINE@) asked for @CCSCOPE_VERB@ of @CCSCOPE_SERVICES@.",
    },
    Kind {
        name: "stop.signal",
        message_id: "c7f1f3d34e1b41469bc30d29cf290d38",
        priority: Priority::Notice,
        subject: "@CCSCOPE_SERVICE@ was stopped by its stop signal",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "stop.kill",
        message_id: "443b132ee5f3484cb675a95c7b92eafb",
        priority: Priority::Warning,
        subject: "@CCSCOPE_SERVICE@ did not exit after its stop signal and was killed",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "stop.stray",
        message_id: "c91de102b382467083a754dd662eb44e",
        priority: Priority::Notice,
        subject: "A stray process of @CCSCOPE_PROJECT@ was stopped",
        body: "A process outside its service's scope was found and ended: @CCSCOPE_REASON@",
    },
    Kind {
        name: "discover.stray",
        message_id: "82c195b1e1514840a9d58eccf03754de",
        priority: Priority::Warning,
        subject: "ccscope discover found stray processes of @CCSCOPE_PROJECT@",
        body: "Processes of the project run outside their services' scopes (started by a side door, or escaped): @CCSCOPE_REASON@. `ccscope adopt` moves them in; `ccscope stop` ends them.",
    },
    Kind {
        name: "stop.container",
        message_id: "e843eb0db44548838de3dd8d064265de",
        priority: Priority::Notice,
        subject: "A container of @CCSCOPE_PROJECT@ was stopped",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "stop.container.kill",
        message_id: "bbd330ebb92f45948c24991d23fa0bae",
        priority: Priority::Warning,
        subject: "A container of @CCSCOPE_PROJECT@ was killed",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "stop.complete",
        message_id: "2f7dcf6dd4e448abbbd2ef1818f98f16",
        priority: Priority::Notice,
        subject: "The stop of @CCSCOPE_PROJECT@ left nothing running",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "stop.incomplete",
        message_id: "5d9e15d87a454daf818bc271927ef21d",
        priority: Priority::Error,
        subject: "The stop of @CCSCOPE_PROJECT@ left processes running",
        body: "@CCSCOPE_REASON@. `ccscope stop`'s report names each survivor; `ccscope discover` shows them.",
    },
    Kind {
        name: "stop.refused",
        message_id: "903f998b909b483ebdb64e9406719350",
        priority: Priority::Warning,
        subject: "A stop left processes of @CCSCOPE_PROJECT@ alone: they are not its caller's",
        body: "uid @CCSCOPE_ACTOR_UID@ (pid @CCSCOPE_ACTOR_PID@) ran a stop of @CCSCOPE_PROJECT@: @CCSCOPE_REASON@. A process is only ever signalled by its own user.",
    },
    Kind {
        name: "adopt",
        message_id: "790f974c201f4c8384122c4bb0a1c173",
        priority: Priority::Notice,
        subject: "A process was adopted into a scope of @CCSCOPE_PROJECT@",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "exec.start",
        message_id: "131244df39474a1e9c9a32b47da14281",
        priority: Priority::Notice,
        subject: "A command was started in a scope of @CCSCOPE_PROJECT@",
        body: "@CCSCOPE_REASON@",
    },
    Kind {
        name: "registry.recovered",
        message_id: "38493aa32231455a909da54f55444af7",
        priority: Priority::Error,
        subject: "ccscope's registry was corrupt and was recovered",
        body: "@CCSCOPE_REASON@. The corrupt file was kept aside; `ccscope registry rebuild` fills the new one from what runs.",
    },
    Kind {
        name: "limit.unenforceable",
        message_id: "d3100d8ecff4415a89b35442fbe1b002",
        priority: Priority::Warning,
        subject: "A limit of @CCSCOPE_SERVICE@ cannot be enforced",
        body: "@CCSCOPE_REASON@. `ccscope doctor` says which controllers this host delegates; `--strict-limits` refuses to start instead.",
    },
    Kind {
        name: "port.conflict",
        message_id: "66fc313625fd44619100a07a8d163ba8",
        priority: Priority::Warning,
        subject: "A port @CCSCOPE_PROJECT@ needs is held by another process",
        body: "@CCSCOPE_REASON@",
    },
];

/// The kind named `name` (`CCSCOPE_EVENT`).
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kinds an `--event` word names: the whole name (`service.failed`), or its last part
/// (`failed`; `stopped` is every kind ending so).
pub fn matching(word: &str) -> Vec<&'static Kind> {
    KINDS
        .iter()
        .filter(|k| k.name == word || k.name.rsplit('.').next() == Some(word))
        .collect()
}

/// The event a service's state change is.
pub fn of_state(state: &str) -> &'static str {
    match state {
        "pending" => "service.pending",
        "launching" => "service.launching",
        "starting" => "service.starting",
        "running" => "service.running",
        "restarting" => "service.restarting",
        "waiting" => "service.waiting",
        "exited" => "service.exited",
        "failed" => "service.failed",
        "stopping" => "service.stopping",
        "paused" => "service.paused",
        _ => "service.stopped",
    }
}

/// The catalogue in systemd's format (`journalctl --update-catalog` reads it).
pub fn catalog() -> String {
    let mut text = String::from(
        "# ccscope's journal catalogue: what each event ccscope writes means.\n\
         # Written from src/audit/events.rs (`ccscope audit --catalog`). Install it (as root) with\n\
         #   install -m 0644 units/ccscope.catalog /usr/lib/systemd/catalog/ && journalctl --update-catalog\n",
    );
    for k in KINDS {
        text.push_str(&format!(
            "\n-- {}\nSubject: {}\nDefined-By: ccscope\nDocumentation: {DOCUMENTATION}\n\n{}\n",
            k.message_id, k.subject, k.body
        ));
    }
    text
}

/// `@FIELD@` references of `text` filled from `field` (an unknown one is left as it is).
pub fn render(text: &str, field: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name_end = after.find('@').filter(|end| {
            *end > 0
                && after[..*end]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        });
        match name_end {
            Some(end) => {
                let name = &after[..end];
                out.push_str(&field(name).unwrap_or_else(|| format!("@{name}@")));
                rest = &after[end + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_well_formed_message_id() {
        let mut ids: Vec<&str> = KINDS.iter().map(|k| k.message_id).collect();
        assert!(ids.iter().all(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KINDS.len());
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
    }

    #[test]
    fn the_shipped_catalogue_is_the_one_this_table_writes() {
        let shipped = include_str!("../../units/ccscope.catalog");
        assert_eq!(
            shipped,
            catalog(),
            "write it again: `ccscope audit --catalog > units/ccscope.catalog`"
        );
    }

    #[test]
    fn event_words_match_whole_names_or_their_last_part() {
        let names = |w| matching(w).iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(names("service.failed"), ["service.failed"]);
        assert_eq!(names("stopped"), ["run.stopped", "service.stopped"]);
        assert!(names("nothing").is_empty());
    }

    #[test]
    fn references_are_filled_and_unknown_ones_kept() {
        let f = |n: &str| (n == "CCSCOPE_SERVICE").then(|| "web".to_string());
        assert_eq!(
            render("@CCSCOPE_SERVICE@ failed: @X@, a@b", &f),
            "web failed: @X@, a@b"
        );
    }
}
