//! Corpus stage: placeholder, being written (issue 3).
