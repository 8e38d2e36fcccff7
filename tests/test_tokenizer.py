"""The tokenizer's guarantee: one token per character, so token i+1 is character i."""
import hashlib
import random

import pytest

from tokenizer import DEFAULT_VOCAB_PATH, SPACE_TOKEN, UNKNOWN_TOKEN, load_vocab

TRICKY_TEXTS = [
    "今天天气不错",
    "",
    " 前后有空格 ",
    "tab\t换行\n回车\r全角空格\u3000不换行空格\xa0",
    "零宽\u200b连接\u200d字符\ufeff",
    "表情😀🇨🇳和扩展区汉字𠀀𪚥",
    "组合附加符e\u0301n\u0303和预组合éñ",
    "Latin Words MixedCase ÀÉÎ",
    "数字2019年12月31日，全角１２３ＡＢＣａｂｃ",
    "标点：，。！？（）《》“”……—",
    "\x00\x1f控制字符\x7f",
]


def random_texts(vocab, count=300, seed=0):
    """Strings drawn from the vocabulary, spaces, and characters the vocabulary lacks."""
    rng = random.Random(seed)
    single_chars = [token for token in vocab if len(token) == 1]
    pool = single_chars + list(" \t\n\u3000\u200b😀𠀀ÀÉ１Ａ") * 20
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def test_blog_example_gives_one_token_per_character(tokenizer):
    assert tokenizer.tokenize("今天天气不错") == ["[CLS]", "今", "天", "天", "气", "不", "错", "[SEP]"]


def test_every_character_is_exactly_one_token_at_position_plus_one(tokenizer, vocab):
    for text in TRICKY_TEXTS + random_texts(vocab):
        tokens = tokenizer.tokenize(text)
        assert len(tokens) == len(text) + 2, repr(text)
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
        for char, token in zip(text, tokens[1:-1]):
            if char in vocab and not "\uff01" <= char <= "\uff5e":  # full-width forms: tested below
                assert token == char, repr(text)
            assert token in vocab


def test_encode_ids_align_with_characters(tokenizer, vocab):
    for text in TRICKY_TEXTS + random_texts(vocab, seed=1):
        token_ids, segment_ids = tokenizer.encode(first=text)
        assert len(token_ids) == len(segment_ids) == len(text) + 2
        assert set(segment_ids) <= {0}
        assert token_ids == [vocab[token] for token in tokenizer.tokenize(text)]


def test_space_like_characters_become_unused1(tokenizer):
    assert tokenizer.tokenize(" \t\n\r\u3000\xa0")[1:-1] == [SPACE_TOKEN] * 6


def test_characters_missing_from_vocab_become_unk(tokenizer):
    assert tokenizer.tokenize("😀\u200b\x00")[1:-1] == [UNKNOWN_TOKEN] * 3


def test_uppercase_finds_lowercase_and_accents_are_stripped(tokenizer):
    assert tokenizer.tokenize("ABCé")[1:-1] == ["a", "b", "c", "e"]


def test_full_width_letters_and_digits_find_half_width_but_chinese_punctuation_stays(tokenizer):
    assert tokenizer.tokenize("Ａｂ１，！")[1:-1] == ["a", "b", "1", "，", "！"]


def test_pair_encoding_keeps_keras_bert_segments(tokenizer):
    token_ids, segment_ids = tokenizer.encode(first="你好", second="世界")
    assert len(token_ids) == 7
    assert segment_ids == [0, 0, 0, 0, 1, 1, 1]


def test_truncation_keeps_sep_and_the_alignment_of_the_kept_part(tokenizer, vocab):
    token_ids, segment_ids = tokenizer.encode(first="今天天气不错", max_len=5)
    assert token_ids == [vocab["[CLS]"], vocab["今"], vocab["天"], vocab["天"], vocab["[SEP]"]]
    token_ids, _ = tokenizer.encode(first="今天", max_len=6)  # keras-bert pads up to max_len
    assert token_ids == [vocab["[CLS]"], vocab["今"], vocab["天"], vocab["[SEP]"], 0, 0]


def test_bundled_vocab_is_googles_chinese_vocab():
    with open(DEFAULT_VOCAB_PATH, "rb") as reader:
        assert hashlib.md5(reader.read()).hexdigest() == "3b5b76c4aef48ecf8cb3abaafe960f09"
    vocab = load_vocab()
    assert len(vocab) == 21128
    assert (vocab["[PAD]"], vocab["[unused1]"], vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"]) == (0, 1, 100, 101, 102)


def test_a_tf_keras_already_resolved_to_keras_3_stops_with_one_message_that_says_what_to_do():
    import os
    import subprocess
    import sys

    from conftest import PROJECT_DIR

    # As in a notebook whose earlier cell used tf.keras before importing this project.
    code = "import tensorflow as tf; tf.keras.layers.Dense; import tokenizer"
    environment = dict(os.environ, TF_USE_LEGACY_KERAS="0", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                            cwd=PROJECT_DIR)
    assert result.returncode == 1
    assert "ImportError: tf.keras is Keras 3 here" in result.stderr and "Restart the kernel" in result.stderr


def import_tokenizer_in_a_new_process(**environment):
    import os
    import subprocess
    import sys

    from conftest import PROJECT_DIR

    environment = {name: value for name, value in dict(os.environ, **environment).items()
                   if name != "TF_CPP_MIN_LOG_LEVEL" or "TF_CPP_MIN_LOG_LEVEL" in environment}
    code = "import sys, tokenizer; print('our first line', file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                            cwd=PROJECT_DIR)
    assert result.returncode == 0, result.stderr
    return result.stderr.splitlines()


def test_tensorflows_start_up_lines_are_held_back_unless_the_user_sets_the_log_level():
    from tokenizer import START_UP_NOISE

    quiet = import_tokenizer_in_a_new_process()
    assert quiet == ["our first line"]
    noisy = import_tokenizer_in_a_new_process(TF_CPP_MIN_LOG_LEVEL="0")
    if not any(START_UP_NOISE.match(line) for line in noisy):
        pytest.skip("this TensorFlow prints no start-up lines on this machine")
    assert noisy[-1] == "our first line"


@pytest.mark.parametrize("line, is_noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("I0000 00:00:1796139064.061921    6238 port.cc:153] oneDNN custom operations are on.", True),
    ("W0000 00:00:1758131045.228 3722035 computation_placer.cc:177] computation placer already registered.", True),
    ("2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers",
     True),
    ("E0000 00:00:1796139066.985018    6238 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)", True),
    ("E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to "
     "register factory for plugin cuDNN when one has already been registered", True),
    ("E0000 00:00:1758131045.2 372 cuda_dnn.cc:522] Loaded runtime CuDNN library: 8.9.0 but source was compiled "
     "with: 9.3.0.", False),
    ("F0000 00:00:1758131045.2 372 gpu_device.cc:100] Check failed: device_count > 0", False),
    ("Traceback (most recent call last):", False),
])
def test_only_start_up_noise_is_held_back_real_errors_are_passed_on(line, is_noise):
    from tokenizer import START_UP_NOISE

    assert bool(START_UP_NOISE.match(line)) == is_noise


def google_truncate_seq_pair(first_length, second_length, maxlen):
    """Google's run_classifier `_truncate_seq_pair`, on lengths: cut the longer text, the second on a tie."""
    while first_length + second_length > maxlen:
        if first_length > second_length:
            first_length -= 1
        else:
            second_length -= 1
    return first_length, second_length


def test_a_pair_is_cut_as_googles_run_classifier_cuts_it_longer_text_first():
    from tokenizer import pair_lengths

    for first_length in range(0, 25):
        for second_length in range(0, 25):
            for maxlen in range(1, 30):
                assert pair_lengths(first_length, second_length, maxlen) == google_truncate_seq_pair(
                    first_length, second_length, maxlen), (first_length, second_length, maxlen)


def test_windows_cover_every_character_whole_windows_a_stride_apart_the_last_ending_with_the_text():
    from tokenizer import window_starts

    assert window_starts(0, 128, 64) == window_starts(128, 128, 64) == [0]
    assert window_starts(300, 128, 64) == [0, 64, 128, 172]
    for length in range(0, 60):
        for maxlen in range(1, 12):
            for stride in range(1, maxlen + 1):
                starts = window_starts(length, maxlen, stride)
                covered = {start + i for start in starts for i in range(maxlen) if start + i < length}
                assert covered == set(range(length)), (length, maxlen, stride)
                assert starts[0] == 0 and starts[-1] == max(length - maxlen, 0)
                assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:])), (length, maxlen, stride)
