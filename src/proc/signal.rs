//! Signals by name: the table a configuration, a report and an exit status share.

use serde::Serialize;

/// A signal with its conventional name (`SIGTERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub name: &'static str,
    pub number: i32,
}

/// The default stop signal.
pub const TERM: Signal = Signal {
    name: "SIGTERM",
    number: libc::SIGTERM,
};

/// The signals a service may be stopped with.
pub const SIGNALS: &[Signal] = &[
    Signal {
        name: "SIGHUP",
        number: libc::SIGHUP,
    },
    Signal {
        name: "SIGINT",
        number: libc::SIGINT,
    },
    Signal {
        name: "SIGQUIT",
        number: libc::SIGQUIT,
    },
    Signal {
        name: "SIGABRT",
        number: libc::SIGABRT,
    },
    Signal {
        name: "SIGKILL",
        number: libc::SIGKILL,
    },
    Signal {
        name: "SIGUSR1",
        number: libc::SIGUSR1,
    },
    Signal {
        name: "SIGUSR2",
        number: libc::SIGUSR2,
    },
    Signal {
        name: "SIGALRM",
        number: libc::SIGALRM,
    },
    TERM,
];

/// The name of a signal number (`SIGKILL`), or the number itself when it has none here.
pub fn signal_name(number: i32) -> String {
    SIGNALS
        .iter()
        .find(|s| s.number == number)
        .map_or_else(|| number.to_string(), |s| s.name.to_string())
}

/// How a process ended, in words: `exit code 3`, `signal SIGKILL`.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {}", signal_name(sig)),
        _ => "an unknown status".to_string(),
    }
}
