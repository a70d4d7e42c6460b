//! Text helpers shared by several stages and by config: header folding and
//! typo hints. A leaf module: it imports nothing from the crate, so parse,
//! map, journey and setup can all use it without pointing at each other.

/// Header names are compared trimmed, case-folded and with inner whitespace
/// collapsed: hubs change `Case ID` to `case id ` without telling anyone.
pub fn normalize_header(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The candidate nearest to `name` by edit distance, if it is close enough to
/// be a typo (a distance of at most 2, or a quarter of the candidate's length).
pub fn closest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fold_case_whitespace_and_bom() {
        assert_eq!(normalize_header("\u{feff}  Case   ID "), "case id");
        assert_ne!(normalize_header("Case ID"), normalize_header("CaseID"));
    }

    #[test]
    fn a_typo_has_a_hint_and_a_stranger_has_none() {
        let known = vec!["case_id".to_string(), "status".to_string()];
        assert_eq!(closest("case_di", &known), Some("case_id"));
        assert_eq!(closest("zzzzzzzz", &known), None);
    }
}
