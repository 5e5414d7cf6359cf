//! Corpus stage: from the chinese-poetry package (or a JSON poem list, or plain text) to the
//! prepared dataset file (being written, issue 3).

pub mod pyrandom;
