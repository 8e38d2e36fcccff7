"""Every relative link and #anchor in the user-facing Markdown resolves, by GitHub's rules.

Checked files: README.md, benchmarks/README.md, data/README.md and docs/*.md. A link's file must exist in the
repository; its #anchor must be a heading of the target Markdown file (or of the file itself),
slugged as GitHub does: markup dropped, lower case, punctuation other than `-` and `_` removed,
each space a `-`, and a repeated heading suffixed `-1`, `-2`, ... Links inside code are not links.
"""
import glob
import os
import re

import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ["README.md", "benchmarks/README.md", "data/README.md"] + sorted(
    os.path.relpath(path, PROJECT_DIR) for path in glob.glob(os.path.join(PROJECT_DIR, "docs", "*.md")))

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) or [text](target "title"); the text may hold one level of [brackets].
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^\s)>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, ...


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    inside = None
    for number, line in enumerate(text.split("\n"), 1):
        fence = FENCE.match(line)
        if fence and (inside is None or fence.group(1) == inside):
            inside = None if inside else fence.group(1)
            continue
        if inside is None:
            yield number, line


def heading_text(markdown):
    """The text GitHub renders for a heading's Markdown: code kept, markup and link targets dropped."""
    text = INLINE_CODE.sub(lambda match: match.group(2).strip(), markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"(\*\*|\*|~~)", "", text)


def slug(text):
    """GitHub's anchor of a heading text: lower case, only letters, digits, `_`, `-` and spaces, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text):
    """The anchors GitHub makes for a Markdown file: heading slugs, repeats numbered, and HTML names."""
    found, seen = set(), {}
    for _, line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading_text(heading.group(2)))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else "%s-%d" % (base, count))
    return found


def links(text):
    """(line number, target) of every inline link, image and reference definition outside code."""
    for number, line in prose_lines(text):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1)
            continue
        for match in INLINE_LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, match.group(1)


def broken_links(path, root=PROJECT_DIR):
    """'file:line: target (why)' for each relative link of `path` (relative to root) that does not resolve."""
    with open(os.path.join(root, path), encoding="utf-8") as reader:
        text = reader.read()
    problems = []
    for number, target in links(text):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = re.sub(r"%20", " ", file_part)
        target_path = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        where = "%s:%d: %s" % (path, number, target)
        if target_path.startswith(".."):
            problems.append(where + " (outside the repository)")
            continue
        full_path = os.path.join(root, target_path)
        if not os.path.exists(full_path):
            problems.append(where + " (no such file: %s)" % target_path)
            continue
        if not anchor:
            continue
        if os.path.isfile(full_path) and full_path.endswith(".md"):
            with open(full_path, encoding="utf-8") as reader:
                if anchor not in anchors(reader.read()):
                    problems.append(where + " (no heading with anchor #%s in %s)" % (anchor, target_path))
        elif os.path.isfile(full_path) and re.fullmatch(r"L\d+(-L\d+)?", anchor):
            with open(full_path, encoding="utf-8") as reader:
                lines = len(reader.read().split("\n"))
            if max(int(n) for n in re.findall(r"\d+", anchor)) > lines:
                problems.append(where + " (%s has %d lines)" % (target_path, lines))
        else:
            problems.append(where + " (an anchor GitHub does not make in %s)" % target_path)
    return problems


@pytest.mark.parametrize("path", CHECKED)
def test_every_relative_link_and_anchor_resolves(path):
    problems = broken_links(path)
    assert not problems, "links that do not resolve:\n" + "\n".join(problems)


def test_the_checked_files_exist():
    for path in CHECKED:
        assert os.path.isfile(os.path.join(PROJECT_DIR, path)), path


def test_anchors_follow_githubs_slug_rules():
    text = "\n".join([
        "# Serving the fine-tuned model",
        "## Batching: time to accuracy",
        "## `--bucket` and `--accumulate N`",
        "## Why these versions?",
        "## When things go wrong",
        "## When things go wrong",
        "## Reading the scripts alongside the blog (当Bert遇上Keras)",
        "## [Results](#results), old vs. new",
        "```",
        "## not a heading: inside code",
        "```",
    ])
    assert anchors(text) == {
        "serving-the-fine-tuned-model", "batching-time-to-accuracy", "--bucket-and---accumulate-n",
        "why-these-versions", "when-things-go-wrong", "when-things-go-wrong-1",
        "reading-the-scripts-alongside-the-blog-当bert遇上keras", "results-old-vs-new"}


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "other.md").write_text("# Other\n## Its section\n", encoding="utf-8")
    (tmp_path / "docs" / "page.md").write_text("\n".join([
        "# Page",
        "[fine](../other.md#its-section) [fine too](#page) [web](https://example.com/#x)",
        "[missing file](../nowhere.md) [missing anchor](../other.md#no-such-section)",
        "[missing own anchor](#nothing) `[in code](../nowhere.md)`",
        "```",
        "[in a fence](../nowhere.md)",
        "```",
        "[ref]: ../gone.py",
    ]), encoding="utf-8")
    problems = broken_links("docs/page.md", root=str(tmp_path))
    assert [problem.split(" (")[0] for problem in problems] == [
        "docs/page.md:3: ../nowhere.md", "docs/page.md:3: ../other.md#no-such-section",
        "docs/page.md:4: #nothing", "docs/page.md:8: ../gone.py"]
