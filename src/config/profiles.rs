//! Stacks compiled into the binary, selected with `--profile NAME`.

/// The text `ccscope init` writes; also the `example` profile, so `ccscope check --profile
/// example` shows what init would write without writing it.
pub const EXAMPLE: &str = include_str!("profiles/example.toml");

/// (name, configuration text) of every built-in profile.
pub const PROFILES: &[(&str, &str)] = &[("example", EXAMPLE)];

pub fn find(name: &str) -> Option<&'static str> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|(n, _)| *n).collect()
}
