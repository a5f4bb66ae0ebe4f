//! The words too common to say what a message is about (English function words): search
//! leaves them out of what it asks the index for, recall out of what it looks up. Both then
//! find "my small vegetable garden" for "where is my garden?".

/// Lowercase, sorted (binary-searched).
const COMMON: &[&str] = &[
    "a", "about", "above", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "but", "by", "can", "could", "did", "do",
    "does", "doing", "don", "down", "each", "for", "from", "further", "had", "has", "have",
    "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if",
    "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "much", "my",
    "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our",
    "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that",
    "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through",
    "to", "too", "under", "until", "up", "us", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours", "yourself",
];

/// Whether `word` (any case) is one of the common words.
pub fn is_common(word: &str) -> bool {
    COMMON.binary_search(&word.to_lowercase().as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_lowercase() {
        assert!(COMMON.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert!(COMMON.iter().all(|w| w.to_lowercase() == *w));
        assert!(is_common("Where") && is_common("is") && is_common("MY"));
        assert!(!is_common("garden") && !is_common("ai") && !is_common(""));
    }
}
