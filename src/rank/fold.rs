//! Which of the week's stories are the same story. In: the week's stories
//! (headlines, sources). Out: groups of indices. Pure. The rule, and why it
//! knows a template from a duplicate, is on [`fold_duplicates`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use unicode_normalization::UnicodeNormalization;

use crate::store::Story;

/// Words that tell no story apart (English and Spanish; other languages' own
/// common words weigh little anyway, being in many headlines).
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "at", "by", "from", "as",
    "is", "are", "its", "it", "into", "new", "after", "amid", "over", "says", "said", "say",
    "will", "than", "more", "about", "be", "was", "were", "has", "have", "had", "not", "but",
    "this", "that", "his", "her", "their", "who", "what", "how", "why", "when", "up", "out", "el",
    "la", "los", "las", "de", "del", "en", "y", "que", "por", "para", "con", "un", "una", "al",
    "se",
];

/// A crude English stem, so "raises", "raised" and "raise" are one word.
fn stem(word: &str) -> String {
    if !word.chars().all(|c| c.is_ascii_alphabetic()) || word.len() <= 3 {
        return word.to_string();
    }
    let mut w = word.to_string();
    if let Some(base) = w.strip_suffix("ies").filter(|b| b.len() >= 3) {
        return format!("{base}y");
    }
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 3 && w.ends_with(suffix) && !w.ends_with("ss") {
            w.truncate(w.len() - suffix.len());
            break;
        }
    }
    if w.len() > 4 && w.ends_with('e') {
        w.pop();
    }
    w
}

/// A headline as a list of comparable words: Unicode-normalised, lower-cased,
/// punctuation dropped (any script's letters and digits are kept), dotted
/// initialisms joined ("U.K." is "uk"), common words dropped, English words
/// stemmed.
pub fn title_words(title: &str) -> Vec<String> {
    use std::sync::OnceLock;
    static INITIALISM: OnceLock<regex::Regex> = OnceLock::new();
    let initialism =
        INITIALISM.get_or_init(|| regex::Regex::new(r"\b(?:\p{L}\.){2,}").expect("static pattern"));
    let normalized: String = title.nfkc().collect::<String>().to_lowercase();
    let joined = initialism.replace_all(&normalized, |c: &regex::Captures| c[0].replace('.', ""));
    joined
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        // A lone Latin letter is a possessive's "s" or an initial: no signal.
        .filter(|w| !(w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic())))
        .map(stem)
        .collect()
}

/// Two stories from one feed with the same headline are one story only when
/// published within twelve hours (a story in two sections); a day apart, a
/// series ("Morning briefing").
const SAME_DAY_SECONDS: i64 = 12 * 3600;

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, i: usize) -> usize {
        let mut root = i;
        while self.0[root] != root {
            root = self.0[root];
        }
        let mut j = i;
        while self.0[j] != root {
            let next = self.0[j];
            self.0[j] = root;
            j = next;
        }
        root
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

/// Weighted share of words from which two headlines are the same story.
const NEAR_DUPLICATE: f64 = 0.75;

/// Groups stories that are the same story. Always: the same canonical URL (the
/// store has folded those already) or identical headlines after normalisation.
/// Otherwise headlines fold only when what they share is distinctive: each word
/// weighs `idf²` over the week's headlines (`idf = ln((N+1)/(df+1)) + 1`), and
/// the shared weight must be at least 75% of the weight of all their words
/// (both with four words or more). So twenty "Clima en ciudad de X hoy…" pages,
/// whose only rare words are the cities that differ, stay twenty stories, while
/// one story told by two feeds folds. Near-duplicates fold only across feeds
/// (their sources are disjoint): a feed does not tell one story twice in other
/// words, but it does publish series from one template.
/// Returns groups of indices, each sorted.
pub fn fold_duplicates(stories: &[Story]) -> Vec<Vec<usize>> {
    let keys: Vec<Vec<String>> = stories.iter().map(|s| title_words(&s.title)).collect();
    let words: Vec<BTreeSet<String>> = keys.iter().map(|k| k.iter().cloned().collect()).collect();
    let mut uf = UnionFind((0..stories.len()).collect());
    let mut exact: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
    for (i, s) in stories.iter().enumerate() {
        // A title gazette made from the text is no headline to match.
        if s.title_derived {
            continue;
        }
        let key = &keys[i];
        if key.is_empty() {
            continue;
        }
        let same = exact.entry(key.clone()).or_default();
        for &j in same.iter() {
            let other = &stories[j];
            let across_feeds = s.sources.iter().all(|x| !other.sources.contains(x));
            let close =
                (s.published_at - other.published_at).num_seconds().abs() <= SAME_DAY_SECONDS;
            if across_feeds || close {
                uf.union(i, j);
            }
        }
        same.push(i);
    }
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        for word in w {
            index.entry(word.as_str()).or_default().push(i);
        }
    }
    let n = stories.len() as f64;
    let weight: HashMap<&str, f64> = index
        .iter()
        .map(|(w, postings)| {
            let idf = ((n + 1.0) / (postings.len() as f64 + 1.0)).ln() + 1.0;
            (*w, idf * idf)
        })
        .collect();
    // Compare only stories that share a word that is not common.
    let common = (stories.len() / 20).max(50);
    for (i, wi) in words.iter().enumerate() {
        if wi.len() < 4 {
            continue;
        }
        let mut shared: BTreeSet<usize> = BTreeSet::new();
        for word in wi {
            let postings = &index[word.as_str()];
            if postings.len() > common {
                continue;
            }
            shared.extend(postings.iter().copied().filter(|&j| j > i));
        }
        for j in shared {
            let wj = &words[j];
            let disjoint = stories[i]
                .sources
                .iter()
                .all(|s| !stories[j].sources.contains(s));
            if wj.len() < 4 || !disjoint {
                continue;
            }
            let both: f64 = wi.intersection(wj).map(|w| weight[w.as_str()]).sum();
            let all: f64 = wi.union(wj).map(|w| weight[w.as_str()]).sum();
            if all > 0.0 && both / all >= NEAR_DUPLICATE {
                uf.union(i, j);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..stories.len() {
        let root = uf.find(i);
        groups.entry(root).or_default().push(i);
    }
    groups.into_values().collect()
}
