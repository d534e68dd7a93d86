//! Which of the week's stories are the same story. In: the week's stories
//! (headlines, sources). Out: groups of indices. Pure. The rule, and why it
//! knows a template from a duplicate, is on [`fold_duplicates`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use unicode_normalization::UnicodeNormalization;

use crate::store::Story;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "at", "by", "from", "as",
    "is", "are", "its", "it", "into", "new",
];

/// A headline as a list of comparable words: Unicode-normalised, lower-cased,
/// punctuation dropped (any script's letters and digits are kept).
pub fn title_words(title: &str) -> Vec<String> {
    let normalized: String = title.nfkc().collect::<String>().to_lowercase();
    normalized
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        // A lone Latin letter is a possessive's "s" or an initial: no signal.
        .filter(|w| !(w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic())))
        .map(str::to_string)
        .collect()
}

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
    let words: Vec<BTreeSet<String>> = stories
        .iter()
        .map(|s| title_words(&s.title).into_iter().collect())
        .collect();
    let mut uf = UnionFind((0..stories.len()).collect());
    let mut exact: HashMap<Vec<String>, usize> = HashMap::new();
    for (i, s) in stories.iter().enumerate() {
        let key = title_words(&s.title);
        if key.is_empty() {
            continue;
        }
        match exact.get(&key) {
            Some(&j) => uf.union(i, j),
            None => {
                exact.insert(key, i);
            }
        }
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
