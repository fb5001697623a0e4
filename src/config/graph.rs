//! The dependency graph: cycles (for validation) and the start plan as layers.

use std::collections::{BTreeMap, BTreeSet};

use super::model::Config;

/// Every elementary cycle reachable by depth-first search, each once, each rotated to start
/// at its smallest name and closed (`[a, b, a]`).
pub fn find_cycles(names: &[&str], edges: &BTreeMap<&str, Vec<&str>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for &next in edges.get(node).map(Vec::as_slice).unwrap_or_default() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let start = path.iter().position(|n| *n == next).expect("on path");
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, n)| *n)
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    cycle.push(cycle[0].clone());
                    found.insert(cycle);
                }
                Mark::New => visit(next, edges, marks, path, found),
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = BTreeSet::new();
    for &name in names {
        if marks.get(name).copied().unwrap_or(Mark::New) == Mark::New {
            visit(name, edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found.into_iter().collect()
}

/// The start plan: layer 0 holds the services without dependencies; every other service sits
/// one layer above its deepest dependency. A layer's services may start in parallel.
/// `config` is validated, hence acyclic.
pub fn start_layers(config: &Config) -> Vec<Vec<String>> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    fn depth_of<'a>(
        name: &'a str,
        config: &'a Config,
        depth: &mut BTreeMap<&'a str, usize>,
    ) -> usize {
        if let Some(d) = depth.get(name) {
            return *d;
        }
        let d = config.services[name]
            .depends_on
            .keys()
            .map(|dep| depth_of(dep, config, depth) + 1)
            .max()
            .unwrap_or(0);
        depth.insert(name, d);
        d
    }
    for name in config.services.keys() {
        depth_of(name, config, &mut depth);
    }
    let mut layers: Vec<Vec<String>> = Vec::new();
    for (name, d) in depth {
        if layers.len() <= d {
            layers.resize(d + 1, Vec::new());
        }
        layers[d].push(name.to_string());
    }
    layers
}

/// The start plan of the `selected` services as one line: `a → b, c`.
pub fn plan_line(config: &Config, selected: &BTreeSet<String>) -> String {
    start_layers(config)
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .filter(|s| selected.contains(s))
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .map(|l| l.join(", "))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The services named in `only` plus everything they depend on, transitively.
pub fn with_dependencies(config: &Config, only: &[String]) -> BTreeSet<String> {
    let mut wanted = BTreeSet::new();
    let mut stack: Vec<&str> = only.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if wanted.insert(name.to_string()) {
            if let Some(s) = config.services.get(name) {
                stack.extend(s.depends_on.keys().map(String::as_str));
            }
        }
    }
    wanted
}

/// The services named in `names` plus everything that depends on them, transitively: what
/// must stop when they do.
pub fn with_dependents(config: &Config, names: &[String]) -> BTreeSet<String> {
    let mut wanted: BTreeSet<String> = names.iter().cloned().collect();
    // Depth-first over the reversed edges; a config is acyclic, and `wanted` stops a revisit.
    let mut stack: Vec<&str> = names.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        for (dependent, s) in &config.services {
            if s.depends_on.contains_key(name) && wanted.insert(dependent.clone()) {
                stack.push(dependent);
            }
        }
    }
    wanted
}

/// The first of `names` that is not a service of `config`, with the closest name that is (a
/// likely typo), for a "did you mean".
pub fn first_unknown<'a>(
    config: &'a Config,
    names: &'a [String],
) -> Option<(&'a str, Option<&'a str>)> {
    names
        .iter()
        .find(|n| !config.services.contains_key(n.as_str()))
        .map(|n| {
            let near = crate::suggest::closest(n, config.services.keys().map(String::as_str));
            (n.as_str(), near)
        })
}

/// For tests of what follows dependencies: db ← api ← web, plus cache alone.
#[cfg(test)]
pub(crate) fn test_stack() -> Config {
    crate::config::parse_config(
        "[project]\nname = \"p\"\n\
         [services.db]\ncommand = [\"x\"]\n\
         [services.api]\ncommand = [\"x\"]\ndepends_on = [\"db\"]\n\
         [services.web]\ncommand = [\"x\"]\ndepends_on = [\"api\"]\n\
         [services.cache]\ncommand = [\"x\"]\n",
        crate::config::ConfigSource::File("ccscope.toml".into()),
        std::path::Path::new("/stack"),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges<'a>(pairs: &[(&'a str, &[&'a str])]) -> BTreeMap<&'a str, Vec<&'a str>> {
        pairs.iter().map(|(a, b)| (*a, b.to_vec())).collect()
    }

    fn names(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn dependents_are_transitive_and_never_dependencies() {
        let c = test_stack();
        assert_eq!(
            names(with_dependents(&c, &["db".into()])),
            ["api", "db", "web"]
        );
        assert_eq!(names(with_dependents(&c, &["api".into()])), ["api", "web"]);
        assert_eq!(names(with_dependents(&c, &["web".into()])), ["web"]);
        assert_eq!(
            names(with_dependents(&c, &["cache".into(), "web".into()])),
            ["cache", "web"]
        );
    }

    #[test]
    fn an_unknown_name_comes_with_the_closest_known_one() {
        let c = test_stack();
        let asked = ["api".to_string(), "dashbord".into(), "ap".into()];
        assert_eq!(first_unknown(&c, &asked), Some(("dashbord", None)));
        assert_eq!(first_unknown(&c, &asked[2..]), Some(("ap", Some("api"))));
        assert_eq!(first_unknown(&c, &asked[..1]), None);
    }

    #[test]
    fn finds_a_two_cycle_once() {
        let e = edges(&[("a", &["b"]), ("b", &["a"])]);
        assert_eq!(find_cycles(&["a", "b"], &e), vec![vec!["a", "b", "a"]]);
    }

    #[test]
    fn finds_a_self_dependency() {
        let e = edges(&[("a", &["a"])]);
        assert_eq!(find_cycles(&["a"], &e), vec![vec!["a", "a"]]);
    }

    #[test]
    fn acyclic_graphs_have_no_cycles() {
        let e = edges(&[("c", &["a", "b"]), ("b", &["a"]), ("a", &[])]);
        assert!(find_cycles(&["a", "b", "c"], &e).is_empty());
    }

    #[test]
    fn rotates_cycles_to_their_smallest_name() {
        let e = edges(&[("z", &["m"]), ("m", &["q"]), ("q", &["z"])]);
        assert_eq!(
            find_cycles(&["z", "m", "q"], &e),
            vec![vec!["m", "q", "z", "m"]]
        );
    }
}
