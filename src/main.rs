use ccscope::demo;
use ccscope::launch::{forward, trampoline};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The internal stages run before anything else: they must stay small and fast.
    match args.get(1).and_then(|a| a.to_str()) {
        Some(trampoline::SUBCOMMAND) => trampoline::main(&args[2..]),
        Some(forward::SUBCOMMAND) => forward::main(&args[2..]),
        Some(demo::SUBCOMMAND) => std::process::exit(demo::main(&args[2..])),
        _ => std::process::exit(ccscope::cli::main()),
    }
}
