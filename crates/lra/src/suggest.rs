//! "Did you mean …?" for unknown names: the closest valid name by edit distance.

/// An error for an unknown `what` called `name`, suggesting the closest of `valid` when one is
/// close enough, and listing them all.
pub fn unknown_name<'a>(
    what: &str,
    name: &str,
    valid: impl IntoIterator<Item = &'a str>,
) -> anyhow::Error {
    let valid: Vec<&str> = valid.into_iter().collect();
    let hint = closest(name, &valid)
        .map(|best| format!(" (did you mean `{best}`?)"))
        .unwrap_or_default();
    anyhow::anyhow!(
        "unknown {what} `{name}`{hint}; expected one of: {}",
        valid.join(", ")
    )
}

/// The valid name nearest to `name`: a name it begins (case-insensitively, at least 3
/// characters), else the fewest edits if within a third of the name's length.
pub fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let completes = |candidate: &str| lower.len() >= 3 && candidate.starts_with(&lower);
    valid
        .iter()
        .map(|&candidate| (strsim::damerau_levenshtein(&lower, candidate), candidate))
        .filter(|&(distance, candidate)| {
            distance <= (name.chars().count() / 3).max(1) || completes(candidate)
        })
        .min_by_key(|&(distance, candidate)| (!completes(candidate), distance))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name_within_reach() {
        let tasks = ["listops", "text", "retrieval", "pathx", "pathfinder"];
        assert_eq!(closest("listop", &tasks), Some("listops"));
        assert_eq!(closest("pathX", &tasks), Some("pathx"));
        assert_eq!(closest("retreival", &tasks), Some("retrieval"));
        assert_eq!(closest("pathf", &tasks), Some("pathfinder"));
        assert_eq!(closest("sentiment", &tasks), None);
        let error = unknown_name("task", "listop", tasks).to_string();
        assert!(error.contains("did you mean `listops`?"), "{error}");
        assert!(error.contains("retrieval"), "{error}");
    }
}
