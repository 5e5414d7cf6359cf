//! The one error type of the core. Every malformed blob and every misuse maps to a variant;
//! nothing in the core panics on data.

use core::fmt;

/// Errors of parsing, writing and running a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    // ---- blob: container ----
    /// The slice is shorter than the fixed prefix or than the length the prefix declares.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes given.
        got: u64,
    },
    /// The slice is longer than the length the prefix declares.
    TrailingBytes {
        /// Declared total length.
        declared: u64,
        /// Bytes given.
        got: u64,
    },
    /// The first 8 bytes are not `TINYPOET`.
    BadMagic,
    /// A format version this core does not read.
    UnsupportedVersion(u32),
    /// The CRC-32 stored in the last 4 bytes does not match the blob.
    ChecksumMismatch {
        /// Stored value.
        stored: u32,
        /// Value computed over bytes `[0, total_len - 4)`.
        computed: u32,
    },
    /// Header length or data offset inconsistent with the blob length or alignment.
    BadLayout(&'static str),
    /// A byte the format specifies as zero padding (between the header and the data region,
    /// between or after the tensors, between an int8 tensor's values and scales) is not zero.
    NonZeroPadding {
        /// Offset of the first non-zero padding byte from the start of the blob.
        offset: u64,
    },
    /// The postcard header does not decode (or has bytes left over).
    MalformedHeader,
    // ---- blob: contents ----
    /// A config field is out of range.
    InvalidConfig(&'static str),
    /// A manifest field is invalid (e.g. an infinite or negative loss).
    InvalidManifest(&'static str),
    /// The vocabulary has the wrong number of entries.
    VocabSize {
        /// `config.vocab_size`.
        expected: usize,
        /// Entries found.
        got: usize,
    },
    /// The vocabulary's byte length is not a multiple of 4 (one u32 per entry).
    VocabBytes {
        /// Bytes found.
        len: usize,
    },
    /// Entry `index` is not a Unicode scalar value.
    VocabInvalidChar {
        /// Entry index.
        index: usize,
        /// Raw value.
        value: u32,
    },
    /// Entry `index` is not greater than entry `index - 1`.
    VocabNotSorted {
        /// Entry index.
        index: usize,
    },
    /// Entry 0 is not `'\0'` (end-of-text).
    VocabNoEndOfText,
    /// The directory has the wrong number of tensors.
    TensorCount {
        /// Expected for the config.
        expected: usize,
        /// Found.
        got: usize,
    },
    /// Tensor `index` has the wrong name for its position.
    TensorName {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` has a shape inconsistent with the config.
    TensorShape {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` has a physical layout this dtype/kind does not allow.
    TensorLayout {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index`'s byte size does not match its shape and dtype.
    TensorSize {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` starts at an offset that is not a multiple of [`crate::blob::ALIGN`].
    TensorMisaligned {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` overlaps the previous tensor (tensors must be in increasing order).
    TensorOverlap {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` extends past the data region.
    TensorOutOfBounds {
        /// Directory index.
        index: usize,
    },
    /// Tensor `index` holds an infinite or NaN value at element `element` (physical order; for
    /// an int8 tensor the scales count after the values, so `element = numel + i` is scale `i`).
    NonFinite {
        /// Directory index.
        index: usize,
        /// Element index in storage order.
        element: usize,
    },
    /// A dtype/variant the format reserves but this build cannot run or write (e.g. f32).
    Unsupported(&'static str),
    /// Tensor `index` is valid blob v1 but this core cannot run it as stored (for example an
    /// int8 bias, an int8 Linear weight stored transposed, or an int8 group size that is not a
    /// multiple of 4 in `4..=1024` dividing the rows).
    UnsupportedTensor {
        /// Directory index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    // ---- writer input ----
    /// The writer got the wrong number of tensors.
    InputTensorCount {
        /// Expected.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// Writer input tensor `index` has the wrong length.
    InputTensorLen {
        /// Directory index.
        index: usize,
        /// Expected elements.
        expected: usize,
        /// Given elements.
        got: usize,
    },
    /// The writer was asked for int8 with a group size it cannot use: it must be a multiple
    /// of 4 in `4..=1024` that divides both `dim` and `ffn_dim` (every matrix row).
    InvalidGroupSize {
        /// The requested group size.
        group_size: u32,
    },
    /// Writer input value not representable (NaN, infinite, or beyond f16 range).
    NotRepresentable {
        /// Directory index.
        index: usize,
        /// Element index, logical (PyTorch) order.
        element: usize,
    },
    /// The output buffer is too small (or a size does not fit in memory).
    OutputTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    // ---- running ----
    /// The run-state buffer has the wrong length (in `f32` words).
    BufferSize {
        /// Words required: [`crate::state_words`].
        expected: usize,
        /// Words given.
        got: usize,
    },
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// Vocabulary size.
        vocab_size: usize,
    },
    /// A character is not in the vocabulary.
    UnknownChar(char),
    /// An empty token sequence where at least one token is needed.
    EmptyInput,
    /// A sampler setting is out of range.
    InvalidSampler(&'static str),
    /// A stop sequence is empty or longer than [`crate::generate::MAX_STOP_CHARS`] characters.
    InvalidStopSequence,
    /// The model produced a NaN or `+inf` logit (its activations overflowed f32): there is no
    /// distribution to sample from. (`-inf` is a masked token, not an error.)
    NonFiniteLogits,
    /// Every token has probability zero: all logits are `-inf` (a constraint masked every
    /// token) or NaN.
    NothingToSample,
    /// A prompt does not fit: `needed` tokens, room for `capacity` (the output buffer, or the
    /// context minus one position for the first generated token).
    PromptTooLong {
        /// Tokens the prompt needs.
        needed: usize,
        /// Tokens there is room for.
        capacity: usize,
    },
    // ---- verse constraints ----
    /// A verse-form specification ([`crate::constrain::FormSpec::parse`]) is not understood.
    InvalidFormSpec(&'static str),
    /// The acrostic has more characters than the form has verse lines.
    AcrosticTooLong {
        /// Characters given.
        chars: usize,
        /// Verse lines of the form.
        lines: usize,
    },
    /// An acrostic character is in the vocabulary but is not a Han character (the masks only
    /// put Han characters inside a verse line).
    AcrosticNotHan(char),
    /// An acrostic or rhyme was requested without a fixed form (`free` has no verse lines).
    NeedsForm(&'static str),
    /// Rhyme was requested but the blob has no rhyme table (see the crate docs, "Rhyme table").
    NoRhymeTable,
    /// The blob's rhyme-table section is inconsistent.
    InvalidRhymeTable(&'static str),
    /// A constraint's mask would leave no allowed token at generated position `position`.
    ConstraintUnsatisfiable {
        /// Generated tokens before this one.
        position: usize,
    },
    /// A token the constraint does not allow here was passed to its `advance`.
    TokenNotAllowed {
        /// The token.
        token: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            Truncated { needed, got } => {
                write!(f, "blob truncated: need {needed} bytes, got {got}")
            }
            TrailingBytes { declared, got } => {
                write!(
                    f,
                    "blob has trailing bytes: declared {declared} bytes, got {got}"
                )
            }
            BadMagic => write!(f, "not a tinypoet blob (bad magic)"),
            UnsupportedVersion(v) => write!(f, "unsupported blob format version {v}"),
            ChecksumMismatch { stored, computed } => write!(
                f,
                "blob checksum mismatch: stored CRC-32 {stored:#010x}, computed {computed:#010x}"
            ),
            BadLayout(w) => write!(f, "bad blob layout: {w}"),
            MalformedHeader => write!(f, "malformed blob header"),
            InvalidConfig(w) => write!(f, "invalid config: {w}"),
            InvalidManifest(w) => write!(f, "invalid manifest: {w}"),
            VocabBytes { len } => write!(
                f,
                "vocabulary is {len} bytes, not a multiple of 4 (one u32 code point per entry)"
            ),
            VocabSize { expected, got } => {
                write!(f, "vocabulary has {got} entries, config says {expected}")
            }
            VocabInvalidChar { index, value } => {
                write!(
                    f,
                    "vocabulary entry {index} ({value:#x}) is not a Unicode scalar value"
                )
            }
            VocabNotSorted { index } => {
                write!(f, "vocabulary not strictly sorted at entry {index}")
            }
            VocabNoEndOfText => write!(f, "vocabulary entry 0 is not '\\0'"),
            TensorCount { expected, got } => {
                write!(f, "blob has {got} tensors, config needs {expected}")
            }
            TensorName { index } => write!(f, "tensor {index} has the wrong name"),
            TensorShape { index } => {
                write!(f, "tensor {index} has a shape inconsistent with the config")
            }
            TensorLayout { index } => write!(f, "tensor {index} has an unsupported layout"),
            TensorSize { index } => {
                write!(f, "tensor {index} byte size does not match shape and dtype")
            }
            TensorMisaligned { index } => write!(f, "tensor {index} is not aligned"),
            TensorOverlap { index } => write!(f, "tensor {index} overlaps the previous tensor"),
            TensorOutOfBounds { index } => write!(f, "tensor {index} extends past the data region"),
            NonFinite { index, element } => {
                write!(f, "tensor {index} element {element} is not finite")
            }
            Unsupported(w) => write!(f, "unsupported: {w}"),
            UnsupportedTensor { index, reason } => {
                write!(f, "tensor {index} cannot be run: {reason}")
            }
            InvalidGroupSize { group_size } => write!(
                f,
                "int8 group size {group_size} must be a multiple of 4 in 4..=1024 dividing dim and ffn_dim"
            ),
            InputTensorCount { expected, got } => {
                write!(f, "writer got {got} tensors, expected {expected}")
            }
            InputTensorLen {
                index,
                expected,
                got,
            } => {
                write!(
                    f,
                    "writer tensor {index} has {got} elements, expected {expected}"
                )
            }
            NotRepresentable { index, element } => write!(
                f,
                "tensor {index} element {element} is NaN, infinite or outside the f16 range"
            ),
            OutputTooSmall { needed, got } => {
                write!(f, "output buffer too small: need {needed} bytes, got {got}")
            }
            BufferSize { expected, got } => {
                write!(
                    f,
                    "run-state buffer has {got} f32 words, expected {expected}"
                )
            }
            TokenOutOfRange { token, vocab_size } => {
                write!(
                    f,
                    "token {token} out of range (vocabulary size {vocab_size})"
                )
            }
            UnknownChar(c) => write!(
                f,
                "character {c:?} (U+{:04X}) is not in the vocabulary",
                c as u32
            ),
            EmptyInput => write!(f, "empty input"),
            InvalidSampler(w) => write!(f, "invalid sampler settings: {w}"),
            InvalidStopSequence => write!(f, "stop sequence empty or too long"),
            NonZeroPadding { offset } => {
                write!(f, "blob has a non-zero padding byte at offset {offset}")
            }
            NonFiniteLogits => write!(
                f,
                "the model produced a NaN or infinite logit: its activations overflow f32"
            ),
            NothingToSample => write!(
                f,
                "every token has probability zero (all logits -inf or NaN: a constraint masked every token)"
            ),
            PromptTooLong { needed, capacity } => write!(
                f,
                "prompt too long: {needed} tokens, room for {capacity}"
            ),
            InvalidFormSpec(w) => write!(f, "invalid verse form: {w}"),
            AcrosticTooLong { chars, lines } => write!(
                f,
                "the acrostic has {chars} characters but the form has only {lines} lines"
            ),
            AcrosticNotHan(c) => write!(
                f,
                "acrostic character {c:?} (U+{:04X}) is not a Han character",
                c as u32
            ),
            NeedsForm(what) => write!(f, "{what} needs a fixed form (五絕, 七絕, 五律 or 七律)"),
            NoRhymeTable => write!(
                f,
                "rhyme requested but the model blob has no rhyme table (add one with `tinypoet rhyme-table`)"
            ),
            InvalidRhymeTable(w) => write!(f, "invalid rhyme table: {w}"),
            ConstraintUnsatisfiable { position } => write!(
                f,
                "the verse constraint allows no token at generated position {position}"
            ),
            TokenNotAllowed { token } => {
                write!(f, "token {token} is not allowed by the verse constraint here")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}
