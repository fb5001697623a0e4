fn main() {
    std::process::exit(ccscope::cli::main());
}
