//! Drawing the dashboard: a pure function of the [`Dashboard`], the size of the terminal, the
//! time and whether colour is wanted. Nothing here reads or changes state, so the screen is
//! tested with ratatui's `TestBackend` at several sizes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Sparkline, Table, TableState, Wrap,
};

use super::model::{Column, Dashboard, Mode, Pane, Row};
use super::sample::MemorySource;

/// How to draw: colour or not (`NO_COLOR`, a dumb terminal), the time, the local zone.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub colour: bool,
    /// Milliseconds since the Unix epoch, now.
    pub now_ms: i64,
    /// The local zone's offset east of UTC, in seconds (times in the events pane).
    pub utc_offset_s: i64,
}

impl Look {
    fn fg(&self, colour: Color) -> Style {
        match self.colour {
            true => Style::default().fg(colour),
            false => Style::default(),
        }
    }
}

/// The terminal is at least this wide for the pressure and ports columns.
const WIDE: u16 = 100;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, d: &Dashboard, look: &Look) {
    let area = frame.area();
    if matches!(d.mode, Mode::LogFull | Mode::Search) {
        draw_log(frame, area, d, look, true);
        return;
    }
    let table_height =
        (d.visible().len() as u16 + 3).clamp(4, area.height.saturating_sub(8).max(4));
    let graph_height = if area.height >= 32 { 4 } else { 2 };
    let [header, table, graphs, bottom, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(table_height),
        Constraint::Length(graph_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, d, look);
    draw_table(frame, table, d, look);
    draw_graphs(frame, graphs, d, look);
    let direction = match area.width >= WIDE {
        true => Direction::Horizontal,
        false => Direction::Vertical,
    };
    let [events, logs] = Layout::default()
        .direction(direction)
        .constraints([Constraint::Percentage(45), Constraint::Percentage(55)])
        .areas(bottom);
    draw_events(frame, events, d, look);
    draw_log(frame, logs, d, look, false);
    draw_footer(frame, footer, d, look);
    if d.mode == Mode::Help {
        draw_help(frame, area);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look) {
    let h = &d.header;
    let (ready, total) = d.ready_count();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut first = vec![
        Span::styled(format!("{} ", h.project), bold),
        Span::raw(format!("· {} · ", h.backend)),
    ];
    match (h.supervisor_pid, d.live) {
        (Some(pid), true) => {
            let up = h
                .started_at_ms
                .map(|s| ((look.now_ms - s).max(0) / 1000) as u64);
            first.push(Span::raw(format!(
                "supervisor pid {pid}{} · ",
                up.map_or(String::new(), |u| format!(" up {}", duration(u)))
            )));
        }
        _ => first.push(Span::styled(
            "no supervisor: read-only · ",
            look.fg(Color::Yellow),
        )),
    }
    let ready_style = match ready == total {
        true => look.fg(Color::Green),
        false => look.fg(Color::Yellow),
    };
    first.push(Span::styled(format!("ready {ready}/{total}"), ready_style));
    if let Some(ms) = h.startup_ms {
        first.push(Span::raw(format!(" · up in {:.1}s", ms as f64 / 1000.0)));
    }
    if let Some(state) = h.run_state.as_deref().filter(|s| *s != "running") {
        first.push(Span::styled(
            format!(" · run {state}"),
            look.fg(Color::Yellow),
        ));
    }
    let memory = match d.rows.iter().find_map(|r| r.memory_source) {
        Some(MemorySource::Cgroup) => "memory.current",
        Some(MemorySource::Rss) => "RSS (no memory.current)",
        None => "-",
    };
    let pressure = match d.rows.iter().any(|r| r.pressure.any()) {
        true => "PSI some avg10",
        false => "none",
    };
    let mut second = format!(
        "mem: {memory} · pressure: {pressure} · sort {}{}",
        d.sort.title(),
        if d.descending { " ▼" } else { " ▲" }
    );
    if !d.filter.is_empty() || d.mode == Mode::Filter {
        second.push_str(&format!(" · filter: {}", d.filter));
        if d.mode == Mode::Filter {
            second.push('_');
        }
    }
    let text = vec![Line::from(first), Line::from(second)];
    frame.render_widget(Paragraph::new(text), area);
}

fn columns(width: u16) -> Vec<Column> {
    let mut columns = vec![
        Column::Service,
        Column::State,
        Column::Ready,
        Column::Restarts,
        Column::Pids,
        Column::Cpu,
        Column::Memory,
    ];
    if width >= WIDE {
        columns.extend([Column::Pressure, Column::Ports]);
    }
    columns.extend([Column::Uptime, Column::Reason]);
    columns
}

fn width_of(c: Column, d: &Dashboard) -> Constraint {
    match c {
        Column::Service => {
            let longest = d.rows.iter().map(|r| r.service.len()).max().unwrap_or(7);
            Constraint::Length(longest.clamp(7, 24) as u16)
        }
        Column::State => Constraint::Length(10),
        Column::Ready => Constraint::Length(5),
        Column::Restarts => Constraint::Length(3),
        Column::Pids => Constraint::Length(4),
        Column::Cpu => Constraint::Length(6),
        Column::Memory => Constraint::Length(7),
        Column::Pressure => Constraint::Length(14),
        Column::Ports => Constraint::Length(12),
        Column::Uptime => Constraint::Length(7),
        Column::Reason => Constraint::Fill(1),
    }
}

fn draw_table(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look) {
    let shown = columns(area.width);
    let rows = d.visible();
    let header = TableRow::new(shown.iter().map(|c| {
        let mark = match (*c == d.sort, d.descending) {
            (true, true) => "▼",
            (true, false) => "▲",
            _ => "",
        };
        Cell::from(format!("{}{mark}", c.title()))
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    let lines: Vec<TableRow> = rows
        .iter()
        .map(|r| TableRow::new(shown.iter().map(|c| cell(r, *c, look))))
        .collect();
    let selected = d
        .selected
        .as_ref()
        .and_then(|s| rows.iter().position(|r| &r.service == s));
    let title = format!(" services ({}) ", rows.len());
    let table = Table::new(lines, shown.iter().map(|c| width_of(*c, d)))
        .header(header)
        .block(pane_block(title, d.focus == Pane::Services, look))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

fn cell<'a>(r: &Row, c: Column, look: &Look) -> Cell<'a> {
    let dash = || "-".to_string();
    match c {
        Column::Service => Cell::from(r.service.clone()),
        Column::State => Cell::from(r.state.clone()).style(state_style(r, look)),
        Column::Ready => Cell::from(match r.ready {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        }),
        Column::Restarts => Cell::from(r.restarts.map_or_else(dash, |n| n.to_string())),
        Column::Pids => Cell::from(r.pids.len().to_string()),
        Column::Cpu => Cell::from(r.cpu_percent.map_or_else(dash, |p| format!("{p:5.1}"))),
        Column::Memory => Cell::from(r.memory_bytes.map_or_else(dash, bytes)),
        Column::Pressure => Cell::from(match r.pressure.any() {
            true => {
                let f = |v: Option<f64>| v.map_or_else(dash, |v| format!("{v:.1}"));
                format!(
                    "{}/{}/{}",
                    f(r.pressure.cpu),
                    f(r.pressure.memory),
                    f(r.pressure.io)
                )
            }
            false => dash(),
        }),
        Column::Ports => Cell::from(match r.ports.is_empty() {
            true => dash(),
            false => r
                .ports
                .iter()
                .map(|p| match r.ports_listening.contains(p) {
                    true => p.to_string(),
                    false => format!("{p}?"),
                })
                .collect::<Vec<_>>()
                .join(","),
        }),
        Column::Uptime => Cell::from(r.uptime_s.map_or_else(dash, duration)),
        Column::Reason => Cell::from(
            r.reason
                .as_deref()
                .filter(|_| shows_reason(&r.state) || r.restarts.is_some_and(|n| n > 0))
                .unwrap_or("")
                .to_string(),
        )
        .style(look.fg(Color::Gray)),
    }
}

/// The states whose reason a person should see.
fn shows_reason(state: &str) -> bool {
    matches!(
        state,
        "failed" | "restarting" | "waiting" | "exited" | "stopping" | "paused" | "stopped"
    )
}

fn state_style(r: &Row, look: &Look) -> Style {
    let colour = match r.state.as_str() {
        "running" if r.ready != Some(false) => Color::Green,
        "running" | "starting" | "launching" | "restarting" | "waiting" | "stopping" => {
            Color::Yellow
        }
        "failed" | "exited" => Color::Red,
        "paused" => Color::Cyan,
        _ => Color::DarkGray,
    };
    match (look.colour, r.state.as_str()) {
        (true, _) => Style::default().fg(colour),
        // Without colour a failure still stands out.
        (false, "failed") => Style::default().add_modifier(Modifier::BOLD),
        (false, _) => Style::default(),
    }
}

fn pane_block<'a>(title: String, focused: bool, look: &Look) -> Block<'a> {
    let style = match (focused, look.colour) {
        (true, true) => Style::default().fg(Color::Cyan),
        (true, false) => Style::default().add_modifier(Modifier::BOLD),
        _ => Style::default(),
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(title)
}

fn draw_graphs(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look) {
    let rows = Layout::vertical([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).split(area);
    let name = d.selected.as_deref().unwrap_or("-");
    let selected = d.selected_row();
    let cpu_now = selected.and_then(|r| r.cpu_percent);
    let mem_now = selected.and_then(|r| r.memory_bytes);
    let stack_cpu = d.stack_cpu.back().map(|v| *v as f64 / 10.0);
    let stack_mem = d.stack_memory.back().copied();
    let empty = std::collections::VecDeque::new();
    let graphs = [
        (
            format!(
                "{name} cpu {}",
                cpu_now.map_or("-".into(), |c| format!("{c:.1}%"))
            ),
            selected.map_or(&empty, |r| &r.cpu_history),
            format!(
                "stack cpu {}",
                stack_cpu.map_or("-".into(), |c| format!("{c:.1}%"))
            ),
            &d.stack_cpu,
            Color::Green,
        ),
        (
            format!("{name} mem {}", mem_now.map_or("-".into(), bytes)),
            selected.map_or(&empty, |r| &r.memory_history),
            format!("stack mem {}", stack_mem.map_or("-".into(), bytes)),
            &d.stack_memory,
            Color::Blue,
        ),
    ];
    for (row, (label, history, stack_label, stack, colour)) in rows.iter().zip(graphs) {
        let [left, right] =
            Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(*row);
        spark(frame, left, &label, history, look.fg(colour));
        spark(frame, right, &stack_label, stack, look.fg(colour));
    }
}

fn spark(
    frame: &mut Frame,
    area: Rect,
    label: &str,
    history: &std::collections::VecDeque<u64>,
    style: Style,
) {
    let width = 24.min(area.width / 2);
    let [text, graph] =
        Layout::horizontal([Constraint::Length(width), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(format!(" {label}")), text);
    // The newest samples, as many as fit.
    let keep = graph.width as usize;
    let data: Vec<u64> = history
        .iter()
        .skip(history.len().saturating_sub(keep))
        .copied()
        .collect();
    frame.render_widget(Sparkline::default().data(&data).style(style), graph);
}

fn draw_events(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look) {
    let inner = area.height.saturating_sub(2) as usize;
    let end = d.events.len().saturating_sub(d.events_scroll);
    let start = end.saturating_sub(inner);
    let lines: Vec<Line> = d
        .events
        .iter()
        .skip(start)
        .take(end - start)
        .map(|e| {
            let colour = match e.event.as_str() {
                x if x.contains("crash") || x.contains("fail") || x.contains("gave_up") => {
                    Color::Red
                }
                x if x.contains("restart") => Color::Yellow,
                _ => Color::Reset,
            };
            Line::from(vec![
                Span::raw(format!("{} ", clock(e.at_ms, look.utc_offset_s))),
                Span::styled(format!("{} ", e.event), look.fg(colour)),
                Span::raw(match &e.service {
                    Some(s) if !e.message.starts_with(s.as_str()) => format!("{s}: {}", e.message),
                    _ => e.message.clone(),
                }),
            ])
        })
        .collect();
    let title = format!(" events ({}) ", d.events.len());
    frame.render_widget(
        Paragraph::new(lines).block(pane_block(title, d.focus == Pane::Events, look)),
        area,
    );
}

fn draw_log(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look, full: bool) {
    let name = d.selected.as_deref().unwrap_or("-");
    let lines = d.log_lines();
    let search_line = u16::from(full && (d.mode == Mode::Search || !d.search.is_empty()));
    let inner = area.height.saturating_sub(2 + search_line) as usize;
    let end = lines.len().saturating_sub(d.log_scroll);
    let start = end.saturating_sub(inner);
    let following = match d.log_scroll {
        0 => "following".to_string(),
        n => format!("{n} lines back"),
    };
    let title = match full {
        true => format!(" log of {name} ({following}) · / search · ↑↓ scroll · l back "),
        false => format!(" log of {name} ({following}) "),
    };
    let text: Vec<Line> = lines[start..end]
        .iter()
        .map(|l| Line::from(l.to_string()))
        .collect();
    let [body, search] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(search_line)]).areas(area);
    frame.render_widget(
        Paragraph::new(text).block(pane_block(title, full || d.focus == Pane::Logs, look)),
        body,
    );
    if search_line == 1 {
        let cursor = if d.mode == Mode::Search { "_" } else { "" };
        frame.render_widget(
            Paragraph::new(format!(" search: {}{cursor}", d.search)),
            search,
        );
    }
}

fn draw_footer(frame: &mut Frame, area: Rect, d: &Dashboard, look: &Look) {
    let line = match (&d.busy, &d.message) {
        (Some(busy), _) => Line::styled(format!(" {busy}…"), look.fg(Color::Yellow)),
        (None, Some(m)) => Line::raw(format!(" {m}")),
        (None, None) if area.width >= WIDE => Line::raw(
            " r restart  s stop  S start  p pause  R reload  X stop all  l log  / filter  o sort  Tab pane  ? help  q quit",
        ),
        (None, None) => {
            Line::raw(" r restart s stop S start p pause R reload l log / filter Tab ? help q quit")
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

const HELP: &str = "\
r  restart the selected service     s  stop it        S  start it
p  pause / resume it                R  reload the configuration
X  stop the whole stack (asks y/n)  l  its log full screen (/ search)
/  filter by name (Enter keeps it, Esc clears)
o  sort by the next column (← →), O reverses
Tab  next pane      ↑ ↓ j k  select or scroll      q  quit

Each verb is the CLI's own request to the supervisor (`ccscope restart`…);
without a live supervisor the view is read-only.
CPU%: cpu.stat usage over the last second, in % of one core.
MEM: memory.current, or the processes' RSS where the cgroup has none.
PSI: cpu/memory/io.pressure `some avg10`.  PORTS: `?` = not listening.

any key closes this";

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 76.min(area.width);
    let height = 18.min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(HELP)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(" keys ")),
        popup,
    );
}

/// The screen as plain text at `width`×`height` (no colour): `top --once` without `--json`.
pub fn text(d: &Dashboard, width: u16, height: u16) -> String {
    let look = Look {
        colour: false,
        now_ms: crate::supervise::feed::now_ms(),
        utc_offset_s: crate::proc::sys::utc_offset_at(crate::supervise::feed::now_ms() / 1000),
    };
    let mut terminal =
        match ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)) {
            Ok(t) => t,
            Err(_) => return String::new(),
        };
    if terminal.draw(|f| draw(f, d, &look)).is_err() {
        return String::new();
    }
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `1536` → `1.5K`.
pub fn bytes(n: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n}B"),
        _ => format!("{value:.1}{}", units[unit]),
    }
}

/// Seconds as `42s`, `3m05s`, `2h07m`, `3d04h`.
pub fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `HH:MM:SS` of a time in the local zone.
fn clock(at_ms: i64, offset_s: i64) -> String {
    let s = (at_ms / 1000 + offset_s).rem_euclid(86400);
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_short() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0G");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7620), "2h07m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d04h");
        assert_eq!(clock(3_723_000, 0), "01:02:03");
        assert_eq!(clock(0, 3600), "01:00:00");
    }
}
