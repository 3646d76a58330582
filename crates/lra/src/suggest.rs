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

/// `message` from serde (`unknown field `stepz`, expected one of `steps`, …`, or the same for an
/// unknown variant) with the closest valid name suggested; other messages are returned unchanged.
pub fn explain_unknown(message: &str) -> String {
    let Some((unknown, expected)) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix))
        .and_then(|(_, rest)| rest.split_once('`'))
    else {
        return message.to_string();
    };
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(unknown, &valid) {
        Some(best) => format!("{message} (did you mean `{best}`?)"),
        None => message.to_string(),
    }
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
        let field = "unknown field `stepz`, expected one of `steps`, `epochs`, `lr`";
        assert!(explain_unknown(field).ends_with("(did you mean `steps`?)"));
        let variant = "unknown variant `cosin`, expected `linear` or `cosine`";
        assert!(explain_unknown(variant).ends_with("(did you mean `cosine`?)"));
        let far = "unknown field `zzz`, expected `steps`";
        assert_eq!(explain_unknown(far), far);
        assert_eq!(explain_unknown("invalid type"), "invalid type");
        let error = unknown_name("task", "listop", tasks).to_string();
        assert!(error.contains("did you mean `listops`?"), "{error}");
        assert!(error.contains("retrieval"), "{error}");
    }
}
