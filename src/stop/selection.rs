//! What a stop ends: the whole project, or the services asked for and every service that
//! requires them (`ccscope stop SVC…`). A selective stop never touches another service's
//! scope, process, container or record: everything of the stop flow asks [`Selection`].

use std::collections::BTreeSet;

use crate::config::{Config, graph};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Everything of the project, services the configuration does not know included.
    Project,
    /// The services asked for and their dependents, transitively.
    Services {
        asked: BTreeSet<String>,
        with_dependents: BTreeSet<String>,
    },
}

impl Selection {
    /// `asked` None (or empty) is the whole project.
    pub(crate) fn new(config: &Config, asked: Option<&BTreeSet<String>>) -> Selection {
        match asked {
            Some(asked) if !asked.is_empty() => {
                let names: Vec<String> = asked.iter().cloned().collect();
                Selection::Services {
                    with_dependents: graph::with_dependents(config, &names),
                    asked: asked.clone(),
                }
            }
            _ => Selection::Project,
        }
    }

    /// Whether the stop ends what belongs to `service` (None: to no service it can name, which
    /// only a whole-project stop ends).
    pub(crate) fn includes(&self, service: Option<&str>) -> bool {
        match (self, service) {
            (Selection::Project, _) => true,
            (Selection::Services { .. }, None) => false,
            (
                Selection::Services {
                    with_dependents, ..
                },
                Some(s),
            ) => with_dependents.contains(s),
        }
    }

    /// The services asked for, sorted; empty for a whole-project stop.
    pub(crate) fn asked(&self) -> Vec<String> {
        match self {
            Selection::Project => Vec::new(),
            Selection::Services { asked, .. } => asked.iter().cloned().collect(),
        }
    }

    /// The services added because they require one asked for, sorted; empty for a
    /// whole-project stop.
    pub(crate) fn dependents(&self) -> Vec<String> {
        match self {
            Selection::Project => Vec::new(),
            Selection::Services {
                asked,
                with_dependents,
            } => with_dependents.difference(asked).cloned().collect(),
        }
    }

    /// Every service the stop ends, for the registry's per-service cleanup; None for all.
    pub(crate) fn services(&self) -> Option<Vec<String>> {
        match self {
            Selection::Project => None,
            Selection::Services {
                with_dependents, ..
            } => Some(with_dependents.iter().cloned().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_holds_the_asked_and_their_dependents_only() {
        let asked: BTreeSet<String> = ["api".to_string()].into();
        let s = Selection::new(&graph::test_stack(), Some(&asked));
        assert_eq!(s.asked(), ["api"]);
        assert_eq!(s.dependents(), ["web"]);
        assert_eq!(s.services().unwrap(), ["api", "web"]);
        assert!(s.includes(Some("api")) && s.includes(Some("web")));
        assert!(!s.includes(Some("db")) && !s.includes(Some("cache")));
        assert!(!s.includes(None), "what names no service is not api's");
    }

    #[test]
    fn no_selection_is_the_whole_project() {
        for asked in [None, Some(BTreeSet::new())] {
            let s = Selection::new(&graph::test_stack(), asked.as_ref());
            assert_eq!(s, Selection::Project);
            assert!(s.includes(None) && s.includes(Some("db")) && s.includes(Some("exec")));
            assert!(s.asked().is_empty() && s.dependents().is_empty());
            assert_eq!(s.services(), None);
        }
    }
}
