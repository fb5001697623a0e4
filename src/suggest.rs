//! "Did you mean …?" for misspelt keys, names and values.

/// The candidate closest to `input` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (input.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|c| (edit_distance(input, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// The hint for an unknown name among `known` (say, services): "did you mean `x`? the
/// services are: a, b", or only the list when nothing is close.
pub fn hint_among(unknown: &str, known: &[&str], what: &str) -> String {
    hint_with(closest(unknown, known.iter().copied()), known, what)
}

/// The same, with the close name already found (`near`).
pub fn hint_with(near: Option<&str>, known: &[&str], what: &str) -> String {
    match near {
        Some(near) => format!(
            "did you mean `{near}`? the {what} are: {}",
            known.join(", ")
        ),
        None => format!("the {what} are: {}", known.join(", ")),
    }
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_names_the_close_one_and_lists_all() {
        let known = ["api", "db", "web"];
        assert_eq!(
            hint_among("ap", &known, "services"),
            "did you mean `api`? the services are: api, db, web"
        );
        assert_eq!(
            hint_among("dashboard", &known, "services"),
            "the services are: api, db, web"
        );
    }

    #[test]
    fn finds_a_likely_typo() {
        assert_eq!(
            closest("comand", ["command", "cwd", "env"]),
            Some("command")
        );
        assert_eq!(
            closest("depends", ["depends_on", "ports"]),
            Some("depends_on")
        );
        assert_eq!(closest("port", ["depends_on", "optional"]), None);
        assert_eq!(
            closest("dashbord", ["dashboard", "clickhouse"]),
            Some("dashboard")
        );
    }

    #[test]
    fn refuses_distant_words() {
        assert_eq!(closest("zzz", ["command", "cwd"]), None);
    }

    #[test]
    fn distance_is_levenshtein() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
