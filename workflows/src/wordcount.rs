//! Text lines in, one final count per word out.

use solstice::prelude::*;

/// A word and how often it occurs in the input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WordCount {
    /// The word, lowercased.
    pub word: String,
    /// Occurrences in the whole input.
    pub count: u64,
}

#[solstice::pipeline]
pub mod wordcount {
    use super::*;

    /// Lines of text: each JSON line is a string.
    #[source]
    pub fn lines(cfg: &SourceConfig) -> Result<FileSource<String>> {
        FileSource::from_config(cfg)
    }

    /// Splits a line into lowercase words (letters, digits and apostrophes).
    #[flat_map]
    pub fn words(line: String) -> Vec<String> {
        line.split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    /// Partitions by the word itself: the word moves into the key, nothing else travels on.
    #[key_by]
    pub fn by_word(w: String) -> (String, ()) {
        (w, ())
    }

    /// Counts each word; emits nothing while the input lasts (see [`final_count`]).
    #[stateful(on_end = final_count)]
    pub fn count(seen: &mut u64, _: ()) -> Option<WordCount> {
        *seen += 1;
        None
    }

    /// When the input ends: one final count per word.
    pub fn final_count(word: &str, seen: &u64) -> Option<WordCount> {
        Some(WordCount {
            word: word.to_owned(),
            count: *seen,
        })
    }

    /// Writes the counts to `sinks.counts`.
    #[sink]
    pub fn counts(cfg: &SinkConfig) -> Result<FileSink<WordCount>> {
        FileSink::from_config(cfg)
    }

    dag! { lines -> words -> by_word -> count -> counts }
}

pub use wordcount::*;
