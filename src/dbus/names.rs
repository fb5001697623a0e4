//! The bus name and object path of a project: its name escaped so any project name makes a
//! valid D-Bus name element and object path element.

/// The prefix of every supervisor's well-known name.
pub const NAME_PREFIX: &str = "dev.ccscope.Project";
/// The prefix of every project's object path.
pub const PATH_PREFIX: &str = "/dev/ccscope/project";
/// The interface every project object serves.
pub const INTERFACE: &str = "dev.ccscope.Project1";

/// The longest bus name the D-Bus specification allows.
const MAX_NAME: usize = 255;

/// `project` as one name element: each byte outside `[A-Za-z0-9]` (and a leading digit) as
/// `_XX` in lowercase hex, which is valid both in a bus name and in an object path; the empty
/// name is `_`.
pub fn escape(project: &str) -> String {
    if project.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(project.len());
    for (i, b) in project.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// `dev.ccscope.Project.<escaped project>`, or None when the escaped name is longer than a
/// bus name may be.
pub fn bus_name(project: &str) -> Option<String> {
    let name = format!("{NAME_PREFIX}.{}", escape(project));
    (name.len() <= MAX_NAME).then_some(name)
}

/// `/dev/ccscope/project/<escaped project>`.
pub fn object_path(project: &str) -> String {
    format!("{PATH_PREFIX}/{}", escape(project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_and_the_rest_is_escaped_as_hex() {
        assert_eq!(escape("shop"), "shop");
        assert_eq!(escape("my-app.dev"), "my_2dapp_2edev");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_eq!(escape("2048"), "_32048");
        assert_eq!(escape("é"), "_c3_a9");
        assert_eq!(escape(""), "_");
    }

    #[test]
    fn every_escaped_name_is_a_valid_bus_name_and_path() {
        for project in ["shop", "my-app.dev", "2048", "a b/c", "", "x.y-z_1", "日本"] {
            let name = bus_name(project).unwrap();
            zbus::names::WellKnownName::try_from(name.as_str())
                .unwrap_or_else(|e| panic!("{name:?} of {project:?}: {e}"));
            let path = object_path(project);
            zbus::zvariant::ObjectPath::try_from(path.as_str())
                .unwrap_or_else(|e| panic!("{path:?} of {project:?}: {e}"));
        }
        assert_eq!(bus_name("my-app").unwrap(), "dev.ccscope.Project.my_2dapp");
        assert_eq!(object_path("my-app"), "/dev/ccscope/project/my_2dapp");
    }

    #[test]
    fn distinct_projects_get_distinct_names() {
        // `_` itself is escaped, so an escape can never be mistaken for a plain name.
        assert_ne!(escape("a-b"), escape("a_2db"));
        assert_ne!(escape("1"), escape("_31"));
    }

    #[test]
    fn a_name_too_long_for_the_bus_is_said() {
        assert!(bus_name(&"-".repeat(100)).is_none());
        assert!(bus_name(&"a".repeat(200)).is_some());
    }
}
