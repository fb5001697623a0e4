fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The trampoline runs before anything else: it must stay small and fast.
    if args
        .get(1)
        .is_some_and(|a| a == ccscope::launch::trampoline::SUBCOMMAND)
    {
        ccscope::launch::trampoline::main(&args[2..]);
    }
    std::process::exit(ccscope::cli::main());
}
