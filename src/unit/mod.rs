//! ccscope as part of systemd: the user unit template `ccscope@.service` and its per-project
//! drop-ins ([`files`]), and sd_notify from a supervisor that runs under it ([`notify`]).
//! The project index these units find their configuration through is the registry's
//! `projects` table; the manager calls (enable, start, stop) are the CLI's.

pub mod files;
pub mod notify;
