//! Every exit code ccscope returns, in one place; the README's table is written from this.

/// The command did what was asked.
pub const SUCCESS: i32 = 0;
/// An unexpected failure: an I/O error or a bug. The message says what failed.
pub const FAILURE: i32 = 1;
/// The command line could not be parsed, or its options contradict each other.
pub const USAGE: i32 = 2;
/// No configuration was found, or it is invalid (the message carries file:line:column).
pub const CONFIG: i32 = 3;
/// The state directory or the registry cannot be used (permissions, another owner, a newer schema).
pub const STATE: i32 = 4;
/// ccscope refused to act because it would overwrite, duplicate or touch something not its own
/// (`init` over an existing file, a second `run` of a supervised project, a port held by another process).
pub const REFUSED: i32 = 5;

/// No containment backend could be used, or it failed (systemd refused a scope, a cgroup could not be written).
pub const CONTAIN: i32 = 6;
/// A service or command could not be started: not found, not executable, a missing cwd or env file.
pub const LAUNCH: i32 = 7;

/// `stop` left something running; the report names every survivor.
pub const STOP_INCOMPLETE: i32 = 8;
/// `run`: the stack did not come up (a service failed for good, or its readiness never came);
/// what had started was stopped again.
pub const START_FAILED: i32 = 9;

/// A verb that needs the project's running supervisor (`restart`, `reload`, `pause`,
/// `resume`) found none.
pub const NO_SUPERVISOR: i32 = 10;

/// The table shown in the README and by `ccscope --help`: code, name, meaning.
pub const TABLE: &[(i32, &str, &str)] = &[
    (SUCCESS, "success", "the command did what was asked"),
    (
        FAILURE,
        "failure",
        "an unexpected failure (I/O error or bug); the message says what failed",
    ),
    (
        USAGE,
        "usage",
        "the command line could not be parsed, or its options contradict each other",
    ),
    (
        CONFIG,
        "config",
        "no configuration was found, or it is invalid",
    ),
    (
        STATE,
        "state",
        "the state directory or the registry cannot be used",
    ),
    (
        REFUSED,
        "refused",
        "ccscope refused to overwrite, duplicate or touch what is not its own",
    ),
    (
        CONTAIN,
        "contain",
        "no containment backend could be used, or it failed",
    ),
    (
        LAUNCH,
        "launch",
        "a service or command could not be started",
    ),
    (
        STOP_INCOMPLETE,
        "incomplete",
        "stop left processes running; the report names each",
    ),
    (
        START_FAILED,
        "start",
        "run: the stack did not come up; what had started was stopped; a verb: a service did not come up again",
    ),
    (
        NO_SUPERVISOR,
        "no-supervisor",
        "the verb needs the project's running supervisor, and none runs",
    ),
];
