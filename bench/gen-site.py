#!/usr/bin/env python3
"""Generate a synthetic nib site for benchmarks.

    gen-site.py DIR N

makes DIR/posts/ with N Markdown posts and DIR/static/ (the repository's static/ when
it exists, else a small style.css). The output depends only on N: the random generator
is seeded, and dates count back from a fixed day, so two runs give the same bytes and
figures from different machines compare.

Each post is named YYYY-MM-DD-some-slug.md, has YAML front matter (title, date, tags
from a pool of 30) and 3-8 paragraphs, some with a heading, a list, a code block or a
table, about 2-6 KB in all: the shape of a real blog, so rendering, indexing and page
sizes are realistic.
"""

import datetime
import random
import shutil
import sys
from pathlib import Path

SEED = 20240601
# Posts are spread over the 20 years before this day; a fixed day keeps output stable.
LAST_DAY = datetime.datetime(2025, 6, 30, 18, 0)
SPAN = datetime.timedelta(days=20 * 365)

TAGS = [
    "rust", "sqlite", "nginx", "linux", "http", "performance", "memory", "testing",
    "markdown", "css", "html", "feeds", "self-hosting", "security", "tls", "dns",
    "backup", "systemd", "unix", "networking", "databases", "design", "writing",
    "tools", "shell", "git", "debugging", "compilers", "release-notes", "meta",
]

WORDS = """
allocator buffer cache socket request response thread queue index table page post
render template feed header latency throughput budget memory process signal restart
config default migration schema query cursor writer reader stream chunk byte frame
server client proxy upstream backend loopback listener timeout deadline limit retry
build release binary static linker symbol section profile benchmark figure measure
small quiet careful simple honest plain steady narrow cheap fast slow early late
garden river window kettle lantern harbour meadow pebble ribbon saddle thimble
""".split()

TITLE_WORDS = """
notes on about why how the a small quiet cheap tiny honest careful fast slow
allocators sockets pages feeds caches indexes queues templates servers proxies
budgets limits restarts signals migrations builds binaries figures gardens rivers
lanterns kettles harbours meadows ribbons
""".split()

LANGS = {
    "rust": 'fn main() {\n    let n = {n};\n    println!("{{}}", n * 2);\n}',
    "sh": "for i in $(seq 1 {n}); do\n  curl -s http://127.0.0.1:8080/ >/dev/null\ndone",
    "python": "def total(xs):\n    return sum(x * {n} for x in xs)\n\nprint(total(range(10)))",
    "sql": "SELECT slug, title\n  FROM posts\n WHERE date < {n}\n ORDER BY date DESC\n LIMIT 10;",
}

FALLBACK_CSS = """\
body { max-width: 40rem; margin: 2rem auto; padding: 0 1rem; font: 1rem/1.6 sans-serif; }
pre { overflow-x: auto; background: #f4f4f4; padding: .5rem; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
"""


def sentence(rng):
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
    # A little inline markup, so the renderer has emphasis, code and links to handle.
    roll = rng.random()
    i = rng.randrange(len(words))
    if roll < 0.10:
        words[i] = f"**{words[i]}**"
    elif roll < 0.20:
        words[i] = f"`{words[i]}`"
    elif roll < 0.25:
        words[i] = f"[{words[i]}](https://example.org/{words[i]})"
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])


def paragraph(rng, budget):
    out = []
    while sum(len(s) + 1 for s in out) < budget:
        out.append(sentence(rng))
    return " ".join(out)


def heading(rng):
    return "## " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize()


def bullet_list(rng):
    return "\n".join(f"- {sentence(rng)}" for _ in range(rng.randint(3, 6)))


def code_block(rng):
    lang = rng.choice(sorted(LANGS))
    return f"```{lang}\n{LANGS[lang].replace('{n}', str(rng.randint(2, 999)))}\n```"


def table(rng):
    cols = rng.sample(WORDS, 3)
    rows = [
        "| " + " | ".join(cols) + " |",
        "|---|---|---:|",
    ]
    for _ in range(rng.randint(2, 5)):
        rows.append(f"| {rng.choice(WORDS)} | {rng.choice(WORDS)} | {rng.randint(1, 9999)} |")
    return "\n".join(rows)


def post(rng, index, when):
    title_words = rng.sample(TITLE_WORDS, rng.randint(3, 6))
    title = " ".join(title_words).capitalize()
    # The index keeps slugs unique however the words fall.
    slug = "-".join(title_words) + f"-{index}"
    tags = rng.sample(TAGS, rng.randint(1, 4))

    target = rng.randint(1800, 5500)
    extras = []
    if rng.random() < 0.5:
        extras.append(bullet_list(rng))
    if rng.random() < 0.4:
        extras.append(code_block(rng))
    if rng.random() < 0.2:
        extras.append(table(rng))
    n_par = rng.randint(3, 8)
    budget = max(80, (target - sum(len(e) for e in extras)) // n_par)
    blocks = [paragraph(rng, budget) for _ in range(n_par)]
    if rng.random() < 0.3:
        blocks.insert(1, "<!-- more -->")
    for extra in extras:
        blocks.insert(rng.randint(2, len(blocks)), extra)
    if rng.random() < 0.6:
        blocks.insert(rng.randint(1, len(blocks)), heading(rng))

    front = (
        "---\n"
        f'title: "{title}"\n'
        f"date: {when:%Y-%m-%d %H:%M}\n"
        f"tags: [{', '.join(tags)}]\n"
        "---\n\n"
    )
    return f"{when:%Y-%m-%d}-{slug}.md", front + "\n\n".join(blocks) + "\n"


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 1:
        sys.exit("usage: gen-site.py DIR N   (N posts, N >= 1)")
    site, n = Path(sys.argv[1]), int(sys.argv[2])
    posts = site / "posts"
    # Refuse to mix with other files: a stale post would change every figure.
    if posts.exists() and any(posts.iterdir()):
        sys.exit(f"gen-site.py: {posts} is not empty")
    posts.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    step = SPAN / n
    for i in range(n):
        # Newest first; a jitter of up to half a step keeps dates irregular but ordered.
        when = LAST_DAY - step * i - step * rng.random() * 0.5
        name, text = post(rng, i, when.replace(second=0, microsecond=0))
        (posts / name).write_text(text, encoding="utf-8")

    static = site / "static"
    repo_static = Path(__file__).resolve().parent.parent / "static"
    if repo_static.is_dir():
        shutil.copytree(repo_static, static, dirs_exist_ok=True)
    static.mkdir(exist_ok=True)
    if not (static / "style.css").exists():
        (static / "style.css").write_text(FALLBACK_CSS, encoding="utf-8")


if __name__ == "__main__":
    main()
