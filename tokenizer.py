"""The char-level tokenizer shared by the three scripts (the blog's `OurTokenizer`).

Google's Chinese BERT vocabulary is mostly single characters, so the blog tokenizes one
token per character instead of running WordPiece. That keeps a simple alignment which the
span tasks depend on: token 0 is `[CLS]`, token i+1 is character i, the last token is `[SEP]`.
Beside the blog (docs/blog_map.md, "1. Loading BERT and the tokenizer"): its `token_dict` loop is
`load_vocab`, its `OurTokenizer._tokenize` is `OurTokenizer._tokenize` here, with the forms below added.

- a character in the vocabulary is its own token;
- a space-like character (space, tab, newline, U+3000, ...) becomes `[unused1]`;
- beyond the blog, as the uncased checkpoint was trained: `A` finds `a`, `é` finds `e`, and a
  full-width letter or digit (`Ａ`, `１`) its half-width form, when that is in the vocabulary;
- anything else becomes `[UNK]`.

    >>> tokenizer = OurTokenizer(load_vocab("data/vocab.txt"))
    >>> tokenizer.tokenize("今天天气不错")
    ['[CLS]', '今', '天', '天', '气', '不', '错', '[SEP]']
"""
import contextlib
import os
import re
import sys
import tempfile
import unicodedata

# TensorFlow's C++ start-up lines that say nothing to act on: INFO and WARNING lines (absl's and the
# older timestamped form, with the CPU-instructions line's continuation), absl's notice about them,
# and on a machine without a GPU the failed cuInit (the device line says so in plain words).
START_UP_NOISE = re.compile(
    r"^([IW]\d{4} |\d{4}-\d\d-\d\d [\d:.]+: [IW] |WARNING: All log messages before absl::InitializeLog|"
    r"To enable the following instructions:|E\d{4} .*(failed call to cuInit|Unable to register cu\w+ factory))")


# TensorFlow's line at the first training step where oneDNN is on without AVX-512 (TF_ENABLE_ONEDNN_OPTS=1
# on such a CPU): harmless, the int32 ops run in Eigen instead, but it reads like a failure.
FIRST_STEP_NOISE = re.compile(r"^E\d{4} .*oneDNN supports DT_INT32 only on platforms with AVX-512")
# Noise is held back unless you set TF_CPP_MIN_LOG_LEVEL yourself (0 shows everything) or TensorFlow was
# imported before this module (its start-up lines are out already).
HOLD_BACK_NOISE = "TF_CPP_MIN_LOG_LEVEL" not in os.environ and "tensorflow" not in sys.modules


@contextlib.contextmanager
def lines_held_back(noise):
    """Catch what is written to stderr inside the block, at the file descriptor (TensorFlow's C++ lines
    do not pass through sys.stderr), then pass on every line that `noise` does not match."""
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines():
                if not noise.match(line):
                    print(line, file=sys.stderr)


def import_tensorflow_quietly():
    """Import TensorFlow with Keras 2 for keras-bert, holding back its start-up noise.

    Its start-up lines are printed before any log level applies, so they are caught at the file
    descriptor and every line that is not START_UP_NOISE is passed on. Set TF_CPP_MIN_LOG_LEVEL
    yourself (0 shows everything) and nothing is held back.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
    if not HOLD_BACK_NOISE:
        import tensorflow as tf
        return tf
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # from then on: errors only
    with lines_held_back(START_UP_NOISE):
        import tensorflow as tf
        tf.config.list_physical_devices()  # CUDA's probing logs here, once
    return tf


tf = import_tensorflow_quietly()

KERAS_3_MESSAGE = (
    "tf.keras is Keras 3 here, but keras-bert needs Keras 2 (the tf-keras package). TensorFlow chose "
    "Keras 3 because it was used before this project set TF_USE_LEGACY_KERAS=1 (in a notebook: another "
    "cell imported TensorFlow first). Restart the kernel and import this project's code first, or set "
    "os.environ['TF_USE_LEGACY_KERAS'] = '1' before the first `import tensorflow`.")
if not tf.keras.layers.Layer.__module__.startswith("tf_keras"):  # this loads tf.keras
    raise ImportError(KERAS_3_MESSAGE)

from keras_bert import Tokenizer  # noqa: E402

DEFAULT_VOCAB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "vocab.txt")
SPACE_TOKEN = "[unused1]"
UNKNOWN_TOKEN = "[UNK]"


def load_vocab(path=DEFAULT_VOCAB_PATH):
    """Read a BERT `vocab.txt` (one token a line, the line number is its id) into {token: id}."""
    token_dict = {}
    with open(path, encoding="utf-8") as reader:
        for line in reader:
            token_dict.setdefault(line.rstrip("\r\n"), len(token_dict))
    return token_dict


class OurTokenizer(Tokenizer):
    """keras-bert's Tokenizer with the blog's one-token-per-character `_tokenize`."""

    def _tokenize(self, text):
        return [self._char_token(char) for char in text]

    def _char_token(self, char):
        if self._is_space(char):
            return SPACE_TOKEN
        if char.isalnum() and "\uff01" <= char <= "\uff5e":
            # Full-width letters and digits (Ａ, １) to their better-trained half-width forms;
            # full-width punctuation (，！) is native to Chinese text and stays.
            char = chr(ord(char) - 0xFEE0)
        without_accent = "".join(c for c in unicodedata.normalize("NFD", char) if unicodedata.category(c) != "Mn")
        # Only single-character forms, so that one character stays one token.
        for form in (char, char.lower(), without_accent.lower()):
            if len(form) == 1 and form in self._token_dict:
                return form
        return UNKNOWN_TOKEN


def pair_lengths(first_length, second_length, maxlen):
    """How many characters of each text of a pair to keep so that both fit in `maxlen`.

    The longer text is cut first, one character at a time, the second on a tie: Google's
    run_classifier `_truncate_seq_pair`, in closed form (serving.py computes the same in the graph).
    """
    if first_length + second_length <= maxlen:
        return first_length, second_length
    return (min(first_length, max(maxlen - second_length, (maxlen + 1) // 2)),
            min(second_length, max(maxlen - first_length, maxlen // 2)))


def window_starts(length, maxlen, stride):
    """Where the windows over a text of `length` characters start, each window `maxlen` characters.

    One window at 0 when the text fits; otherwise a window every `stride` characters, the last one
    moved back to end with the text, so that every window is whole and every character is in one
    (SQuAD's doc_stride, with `stride` <= `maxlen`). serving.py computes the same in the graph.
    """
    count = 1 if length <= maxlen else -(-(length - maxlen) // stride) + 1
    return [min(i * stride, max(length - maxlen, 0)) for i in range(count)]
