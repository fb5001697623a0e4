//! The configuration parser under a bounded, deterministic fuzz run: random bytes and
//! mutations of valid configurations (the built-in profiles, the README's examples) never
//! panic, never hang, and every error they give points at a line and column inside the text.
//!
//! Plain `cargo test` runs a few thousand cases in seconds (`CCSCOPE_FUZZ_CASES` sets how
//! many, `CCSCOPE_FUZZ_SEED` where the generator starts). The input of the case in hand is
//! kept in `$CARGO_TARGET_TMPDIR/config-fuzz/case.toml`, so a crash the harness cannot catch
//! (a stack overflow) still leaves it behind to reproduce with `ccscope -f … check`;
//! `CCSCOPE_FUZZ_DUMP=1` prints every diagnostic met, to read what users would be told.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ccscope::config::{ConfigError, ConfigRequest, ConfigSource, load, parse_config, profiles};

/// The largest input made: the parser is meant to be fed files, not streams.
const MAX_LEN: usize = 64 * 1024;
/// A case that takes longer than this has hung.
const CASE_DEADLINE: Duration = Duration::from_secs(20);
const DEFAULT_CASES: u64 = 3_000;

/// xorshift64*: small, fast, and the same sequence everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces with meaning to TOML or to ccscope's schema, to make mutations that get further
/// into the parser than random bytes do.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "#",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\\",
    "\\u",
    "\\U0010FFFF",
    "\\x00",
    "\0",
    "é",
    "\u{202e}",
    "\u{feff}",
    "🦀",
    "true",
    "false",
    "inf",
    "nan",
    "-0",
    "0x7f",
    "1e400",
    "99999999999999999999",
    "-1",
    "1979-05-27T07:32:00Z",
    "\"100000h\"",
    "\"0s\"",
    "\"1.5.5s\"",
    "\"-3s\"",
    "\"1 h\"",
    "[project]",
    "[defaults]",
    "[services.a]",
    "[services.b]",
    "[services.a.docker]",
    "name",
    "command",
    "shell",
    "depends_on",
    "ready",
    "liveness",
    "restart",
    "ports",
    "env",
    "env_files",
    "cwd",
    "limits",
    "stop_timeout",
    "stop_signal",
    "optional",
    "discover",
    "policy",
    "max_restarts",
    "initial_backoff",
    "tcp",
    "http",
    "log",
    "notify",
    "exec",
    "interval",
    "timeout",
    "start_timeout",
    "memory",
    "cpu",
    "pids",
    "image",
    "state_dir",
    "\"SIGKILL\"",
    "\"SIGNOPE\"",
    "\"healthy\"",
    "\"started\"",
    "\"completed\"",
    "[\"a\"]",
    "{ a = \"healthy\" }",
    "\"$(\"",
    "\"../..\"",
    "\"/\"",
    "65535",
    "65536",
    "0",
];

/// The valid configurations mutations start from: the built-in profiles and every TOML
/// example in the README.
fn seeds() -> Vec<String> {
    let mut seeds: Vec<String> = profiles::names()
        .into_iter()
        .filter_map(|n| profiles::find(n).map(|t| t.into_owned()))
        .collect();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```toml\n") {
        rest = &rest[start + "```toml\n".len()..];
        let end = rest.find("```").unwrap_or(rest.len());
        seeds.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    assert!(
        seeds.len() >= 4,
        "profiles and README examples: {}",
        seeds.len()
    );
    seeds
}

/// One mutation of `bytes`, in place.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, seeds: &[String]) {
    let at = |rng: &mut Rng, bytes: &Vec<u8>| rng.below(bytes.len() + 1);
    match rng.below(9) {
        0 => {
            if !bytes.is_empty() {
                let i = rng.below(bytes.len());
                bytes[i] = rng.next() as u8;
            }
        }
        1 => {
            let i = at(rng, bytes);
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, junk);
        }
        2 => {
            let i = at(rng, bytes);
            let j = (i + 1 + rng.below(64)).min(bytes.len());
            bytes.drain(i.min(j)..j);
        }
        3 | 4 => {
            let i = at(rng, bytes);
            let token = rng.pick(TOKENS).as_bytes().to_vec();
            bytes.splice(i..i, token);
        }
        5 => {
            // A line of another seed, somewhere.
            let seed = rng.pick(seeds);
            let lines: Vec<&str> = seed.lines().collect();
            if !lines.is_empty() {
                let line = format!("{}\n", rng.pick(&lines));
                let i = at(rng, bytes);
                bytes.splice(i..i, line.into_bytes());
            }
        }
        6 => {
            // A piece of the text again, elsewhere (repeated keys and tables).
            if !bytes.is_empty() {
                let from = rng.below(bytes.len());
                let to = (from + 1 + rng.below(256)).min(bytes.len());
                let piece = bytes[from..to].to_vec();
                let i = at(rng, bytes);
                bytes.splice(i..i, piece);
            }
        }
        7 => {
            // Deep nesting: arrays or inline tables inside each other.
            let depth = 1 + rng.below(4_000);
            let (open, close) = if rng.below(2) == 0 {
                ("[", "]")
            } else {
                ("{a=", "}")
            };
            let mut nested = format!("\nx = {}", open.repeat(depth));
            if rng.below(2) == 0 {
                nested.push_str(&close.repeat(depth));
            }
            nested.push('\n');
            let i = at(rng, bytes);
            bytes.splice(i..i, nested.into_bytes());
        }
        _ => {
            // A long line or a long string.
            let n = 1 + rng.below(20_000);
            let text = format!("\nk = \"{}\"\n", "a".repeat(n));
            let i = at(rng, bytes);
            bytes.splice(i..i, text.into_bytes());
        }
    }
    bytes.truncate(MAX_LEN);
}

/// The next case: random bytes now and then, else a seed mutated one to eight times.
fn case(rng: &mut Rng, seeds: &[String]) -> Vec<u8> {
    if rng.below(8) == 0 {
        let n = rng.below(4_096);
        return (0..n).map(|_| rng.next() as u8).collect();
    }
    let mut bytes = rng.pick(seeds).as_bytes().to_vec();
    for _ in 0..1 + rng.below(8) {
        mutate(rng, &mut bytes, seeds);
    }
    bytes
}

/// What is wrong with the parser's answer to `bytes`, if anything.
fn judge(bytes: &[u8], path: &Path) -> Result<(), String> {
    let base = path.parent().unwrap();
    let (result, text, file) = match std::str::from_utf8(bytes) {
        // Text goes straight to the parser; bytes that are not UTF-8 through a file, as
        // `-f FILE` reads them.
        Ok(text) => (
            parse_config(text, ConfigSource::File("fuzz.toml".into()), base),
            text.to_string(),
            "fuzz.toml".to_string(),
        ),
        Err(e) => {
            let request = ConfigRequest {
                file: Some(path.to_path_buf()),
                profile: None,
            };
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
            (load(&request, base), valid, path.display().to_string())
        }
    };
    let diagnostics = match result {
        Ok(_) => return Ok(()),
        Err(ConfigError::Invalid { diagnostics }) => diagnostics,
        Err(other) => return Err(format!("an error that is not about the text: {other}")),
    };
    if diagnostics.is_empty() {
        return Err("invalid, with no diagnostic".into());
    }
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &diagnostics {
        let l = &d.location;
        if l.file != file {
            return Err(format!("{d}: not located in {file}"));
        }
        if l.line == 0 || l.column == 0 {
            return Err(format!("{d}: line and column start at 1"));
        }
        let Some(line) = lines.get(l.line - 1) else {
            return Err(format!("{d}: past the last line ({})", lines.len()));
        };
        // One past the end of the line is where a missing piece goes.
        if l.column > line.chars().count() + 1 {
            return Err(format!("{d}: past the end of line {}", l.line));
        }
        if std::env::var_os("CCSCOPE_FUZZ_DUMP").is_some() {
            eprintln!("DIAG {}", d.message.replace('\n', " / "));
        }
        if d.message.trim().is_empty() {
            return Err(format!("{}: an empty message", l));
        }
        // What the user wrote is quoted in backticks; outside them, no Rust type names.
        let ours: String = d.message.split('`').step_by(2).collect();
        if ["Raw", "Spanned", "DeValue", "::", "Some(", "Error {"]
            .iter()
            .any(|n| ours.contains(n))
        {
            return Err(format!("{d}: a Debug name in the message"));
        }
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_config_parser_never_panics_hangs_or_gives_an_unlocated_error() {
    let cases = env_number("CCSCOPE_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env_number("CCSCOPE_FUZZ_SEED").unwrap_or(0x00cc_5c09e);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("config-fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("case.toml");
    let seeds = seeds();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(&path, s).unwrap();
        if let Err(why) = judge(s.as_bytes(), &path) {
            panic!("seed {i} is judged wrong, so is the harness: {why}\n{s}");
        }
    }

    // The cases run on a thread of their own with the main thread's stack size, so a case
    // that hangs is seen (its answer does not come within the deadline) and reported.
    let (tx, rx) = mpsc::channel::<(u64, Result<(), String>)>();
    let (case_tx, case_rx) = mpsc::channel::<(u64, Vec<u8>)>();
    let worker_path = path.clone();
    let worker = std::thread::Builder::new()
        .name("config-fuzz".into())
        .stack_size(8 << 20)
        .spawn(move || {
            for (n, bytes) in case_rx {
                let verdict = std::panic::catch_unwind(|| judge(&bytes, &worker_path))
                    .unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(format!("panicked: {why}"))
                    });
                if tx.send((n, verdict)).is_err() {
                    return;
                }
            }
        })
        .unwrap();

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut accepted = 0;
    for n in 0..cases {
        let bytes = case(&mut rng, &seeds);
        assert!(bytes.len() <= MAX_LEN);
        std::fs::write(&path, &bytes).unwrap();
        case_tx.send((n, bytes)).unwrap();
        let (got, verdict) = rx.recv_timeout(CASE_DEADLINE).unwrap_or_else(|_| {
            panic!(
                "case {n} (seed {seed:#x}) did not finish within {CASE_DEADLINE:?}: its input \
                 is in {}",
                path.display()
            )
        });
        assert_eq!(got, n);
        match verdict {
            Ok(()) => {}
            Err(why) => panic!(
                "case {n} (seed {seed:#x}): {why}\nits input is in {}",
                path.display()
            ),
        }
        // How many cases still parse: a harness whose every case is a syntax error would
        // test little beyond the first line.
        if parse_config(
            &String::from_utf8_lossy(&std::fs::read(&path).unwrap()),
            ConfigSource::File("fuzz.toml".into()),
            &dir,
        )
        .is_ok()
        {
            accepted += 1;
        }
    }
    drop(case_tx);
    worker.join().unwrap();
    eprintln!("{cases} cases, {accepted} of them valid configurations");
    assert!(
        cases < 100 || accepted > 0,
        "some mutations stay valid: the harness reaches the validator"
    );
}
