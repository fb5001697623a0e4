//! Snapshots of the screen against ratatui's `TestBackend`, at 120×40 and 80×24, for a stack
//! with a failed, a paused and a restarting service. The expected screens are the text files
//! in `src/top/snapshots/`; `CCSCOPE_UPDATE_SNAPSHOTS=1 cargo test --lib top::` writes them
//! anew (then read the diff before committing). A missing file fails the test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::model::{Dashboard, EventLine};
use super::render::{Look, draw};
use super::sample::{MemorySource, Pressure, Sample};
use crate::supervise::feed::{FeedEvent, ServiceEvent, Snapshot};

const NOW_MS: i64 = 1_780_000_000_000;

fn service(
    name: &str,
    state: &str,
    ready: bool,
    restarts: u32,
    reason: Option<&str>,
) -> ServiceEvent {
    ServiceEvent {
        project: "shop".into(),
        service: name.into(),
        run_id: "r1".into(),
        state: state.into(),
        ready,
        restarts,
        main_pid: Some(4000),
        pids: vec![],
        ports: match name {
            "web" => vec![8080],
            "db" => vec![5432],
            _ => vec![],
        },
        reason: reason.map(str::to_string),
        last_exit: None,
        since_ms: NOW_MS - 60_000,
        trigger: None,
    }
}

/// The fixture: db runs, web is restarting, worker failed, cache is paused.
fn fixture() -> Dashboard {
    let names = ["db", "web", "worker", "cache"];
    let services: Vec<(String, Vec<u16>)> = names.iter().map(|n| (n.to_string(), vec![])).collect();
    let mut d = Dashboard::new("shop", "systemd", &services);
    d.apply_feed(&FeedEvent::Snapshot(Snapshot {
        project: "shop".into(),
        run_id: "r1".into(),
        supervisor_pid: 3999,
        started_at_ms: NOW_MS - 754_000,
        startup_ms: Some(1_840),
        run_state: "running".into(),
        backend: "systemd".into(),
        services: vec![
            service("db", "running", true, 0, None),
            service(
                "web",
                "restarting",
                false,
                2,
                Some("exited with code 1; restarting in 2s"),
            ),
            service(
                "worker",
                "failed",
                false,
                5,
                Some("gave up after 5 restarts: exit code 3"),
            ),
            service(
                "cache",
                "paused",
                false,
                0,
                Some("paused by `ccscope pause`"),
            ),
        ],
    }));
    // Two samples a second apart: db burns 97 % of a core.
    for (at, db_cpu) in [(0u64, 1_000_000u64), (1_000_000, 1_970_000)] {
        let mut samples = BTreeMap::new();
        samples.insert(
            "db".to_string(),
            Sample {
                cpu_usec: Some(db_cpu),
                memory_bytes: Some(412 * 1024 * 1024),
                memory_source: Some(MemorySource::Rss),
                pressure: Pressure {
                    cpu: Some(12.5),
                    memory: Some(0.0),
                    io: Some(1.25),
                },
                pids: vec![4000, 4001, 4002],
                uptime_s: Some(754),
                read_at_us: Some(at),
            },
        );
        samples.insert(
            "cache".to_string(),
            Sample {
                cpu_usec: Some(5_000),
                memory_bytes: Some(3 * 1024 * 1024),
                memory_source: Some(MemorySource::Rss),
                pressure: Pressure::default(),
                pids: vec![4100],
                uptime_s: Some(700),
                read_at_us: None,
            },
        );
        d.apply_samples(&samples, &[5432], at);
    }
    for (i, (service, event, message)) in [
        ("worker", "service.crashed", "worker exited with code 3"),
        ("web", "service.restarting", "web restarting in 2s"),
        (
            "worker",
            "service.gave_up",
            "worker: gave up after 5 restarts",
        ),
        (
            "cache",
            "control.request",
            "pause cache asked by uid 0 (ccscope)",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        d.push_event(EventLine {
            at_ms: NOW_MS - 30_000 + i as i64 * 1000,
            service: Some(service.into()),
            event: event.into(),
            message: message.into(),
        });
    }
    for line in [
        "db: listening on 5432",
        "db: checkpoint complete",
        "db: 3 clients",
    ] {
        d.push_log("db", line.into());
    }
    d
}

fn screen(d: &Dashboard, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let look = Look {
        colour: false,
        now_ms: NOW_MS,
        utc_offset_s: 0,
    };
    terminal.draw(|f| draw(f, d, &look)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buffer[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/top/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("CCSCOPE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}): CCSCOPE_UPDATE_SNAPSHOTS=1 writes it; this screen was:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "the screen differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn the_dashboard_at_120_by_40() {
    assert_snapshot("dashboard_120x40", &screen(&fixture(), 120, 40));
}

#[test]
fn the_dashboard_at_80_by_24() {
    assert_snapshot("dashboard_80x24", &screen(&fixture(), 80, 24));
}

#[test]
fn the_help_and_the_full_screen_log_at_80_by_24() {
    let mut d = fixture();
    d.handle_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    assert_snapshot("help_80x24", &screen(&d, 80, 24));
    d.handle_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
    d.handle_key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::NONE));
    d.handle_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
    for c in "check".chars() {
        d.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    assert_snapshot("log_search_80x24", &screen(&d, 80, 24));
}

#[test]
fn the_screen_says_what_the_fixture_holds() {
    // Independent of the snapshot files: the figures a person reads.
    let text = screen(&fixture(), 120, 40);
    let db = text.lines().find(|l| l.contains("│db ")).expect("a db row");
    assert!(db.contains(" 97.0 "), "CPU% of the sample delta: {db}");
    assert!(db.contains("412.0M"), "{db}");
    assert!(db.contains("12.5/0.0/1.2"), "pressure: {db}");
    assert!(db.contains("12m34s"), "uptime: {db}");
    let worker = text.lines().find(|l| l.contains("│worker ")).unwrap();
    assert!(
        worker.contains("failed") && worker.contains("gave up after 5"),
        "{worker}"
    );
    assert!(text.contains("ready 1/4"), "{text}");
    assert!(text.contains("supervisor pid 3999 up 12m34s"), "{text}");
    assert!(
        text.contains("mem: RSS (no memory.current)"),
        "the memory source is said: {text}"
    );
    let narrow = screen(&fixture(), 80, 24);
    assert!(
        !narrow.contains("PSI cpu/mem/io"),
        "the pressure column only where it fits"
    );
    assert!(narrow.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn states_are_coloured_only_when_colour_is_wanted() {
    let d = fixture();
    let colour_of = |colour: bool| {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        let look = Look {
            colour,
            now_ms: NOW_MS,
            utc_offset_s: 0,
        };
        terminal.draw(|f| draw(f, &d, &look)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        // The first cell of `failed` in worker's row.
        let y = (0..40)
            .find(|y| {
                let row: String = (0..120).map(|x| buffer[(x, *y)].symbol()).collect();
                row.contains("│worker ")
            })
            .unwrap();
        let x = (0..120)
            .find(|x| buffer[(*x, y)].symbol() == "f" && buffer[(*x + 1, y)].symbol() == "a")
            .unwrap();
        (buffer[(x, y)].fg, buffer[(x, y)].modifier)
    };
    let (fg, _) = colour_of(true);
    assert_eq!(fg, ratatui::style::Color::Red);
    let (fg, modifier) = colour_of(false);
    assert_eq!(
        fg,
        ratatui::style::Color::Reset,
        "NO_COLOR: no colour at all"
    );
    assert!(
        modifier.contains(ratatui::style::Modifier::BOLD),
        "a failure still stands out"
    );
}
