//! The demo stack's services: hidden helper subcommands of ccscope itself, so `ccscope run
//! --profile demo` runs on any Linux machine with nothing installed. They have the Context
//! Cleaner shape, bad habits included: `bridge-sync` double-forks a worker daemon and leaves a
//! `nohup` child, as real scripts do.
//!
//! Usage (internal):
//!   `ccscope __demo http --name NAME --port PORT [--path /ping]… [--upstream HOST:PORT]`
//!   `ccscope __demo bridge-sync`
//!   `ccscope __demo worker --name NAME`

use std::ffi::{CString, OsString};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

pub const SUBCOMMAND: &str = "__demo";

/// Runs a demo service. Returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let value = |flag: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    };
    let name = value("--name").pop().unwrap_or_else(|| "demo".to_string());
    match args.first().map(String::as_str) {
        Some("http") => {
            let Some(port) = value("--port").pop().and_then(|p| p.parse::<u16>().ok()) else {
                eprintln!("{SUBCOMMAND} http needs --port PORT");
                return 2;
            };
            http(&name, port, &value("--path"), value("--upstream").pop())
        }
        Some("bridge-sync") => bridge_sync(),
        Some("worker") => worker(&name),
        _ => {
            eprintln!("ccscope: {SUBCOMMAND} is internal to ccscope (the demo profile's services)");
            2
        }
    }
}

/// An HTTP service answering 200 on its paths and 404 elsewhere.
fn http(name: &str, port: u16, paths: &[String], upstream: Option<String>) -> i32 {
    if let Some(up) = upstream {
        match TcpStream::connect(&up) {
            Ok(_) => println!("{name}: upstream {up} answers"),
            Err(e) => println!("{name}: upstream {up} does not answer yet: {e}"),
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: cannot listen on 127.0.0.1:{port}: {e}");
            return 1;
        }
    };
    println!("{name}: listening on 127.0.0.1:{port}");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let paths = paths.to_vec();
        let name = name.to_string();
        std::thread::spawn(move || answer(&name, stream, &paths));
    }
    0
}

fn answer(name: &str, mut stream: TcpStream, paths: &[String]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body) = if paths.iter().any(|p| p == path) {
        ("200 OK", "Ok.\n")
    } else {
        ("404 Not Found", "not found\n")
    };
    let _ = write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    println!("{name}: GET {path} {}", &status[..3]);
}

/// Starts its helpers the way real scripts do, then syncs forever.
fn bridge_sync() -> i32 {
    let argv: Vec<CString> = [
        "ccscope",
        SUBCOMMAND,
        "worker",
        "--name",
        "bridge-sync-worker",
    ]
    .iter()
    .filter_map(|a| CString::new(*a).ok())
    .collect();
    // A daemon: fork, setsid, fork again, so it is nobody's child and leads no terminal.
    let daemon = crate::proc::sys::Detach {
        new_session: true,
        null_stdio: false,
    };
    let _ = crate::proc::sys::spawn_detached(c"/proc/self/exe", &argv, daemon);
    // And a `nohup … &` that outlives the shell that started it.
    let self_exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let _ = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("nohup \"$0\" __demo worker --name bridge-sync-nohup >/dev/null 2>&1 &")
        .arg(self_exe)
        .status();
    println!("bridge_sync: sync loop started");
    let _ = std::io::stdout().flush();
    let _ = crate::supervise::notify::send("READY=1\nSTATUS=syncing");
    let mut rounds = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(30));
        rounds += 1;
        println!("bridge_sync: sync round {rounds} done");
        let _ = std::io::stdout().flush();
    }
}

fn worker(name: &str) -> i32 {
    println!("{name}: working");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
