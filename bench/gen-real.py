#!/usr/bin/env python3
"""Generate a site shaped like blogs migrated from Jekyll, Hugo and Zola.

    gen-real.py DIR N

makes DIR/posts/ with N posts as those generators lay them out, copied unchanged: a third
Jekyll (`YYYY-MM-DD-slug.markdown` and `.md`, dates like `2015-10-26 15:37:30 -0700`,
`categories`, `redirect_from`, `{% highlight %}` and `{% post_url %}`), a third Hugo page
bundles (`posts/slug/index.md` with an image beside it, TOML front matter, `aliases`,
`lastmod`, `{{< figure >}}` and `{{< youtube >}}`), a third Zola (`path = "YYYY/MM/DD/slug"`
as the only date, `[taxonomies]`, a site-defined `{{ figure(...) }}` with its template in
DIR/shortcodes/, and an `_index.md` per section). The text is made up from a word list;
the output depends only on N, so figures from different machines compare.
"""

import datetime
import random
import sys
from pathlib import Path

SEED = 20261202
LAST_DAY = datetime.datetime(2025, 6, 30, 18, 0)
SPAN = datetime.timedelta(days=12 * 365)

WORDS = """
allocator buffer cache socket request response thread queue index table page post
render template feed header latency budget memory process signal restart config
migration schema query cursor writer reader stream chunk byte frame server client
proxy upstream garden river window kettle lantern harbour meadow pebble ribbon
""".split()
TAGS = ["jekyll", "hugo", "zola", "rust", "ruby", "go", "C++", "c", "web", "notes",
        "Release", "release", "css", "linux"]
# A PNG of one pixel: bundles carry a real image file.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def sentence(rng, n):
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def body(rng, extra):
    paras = [" ".join(sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(2, 5)))
             for _ in range(rng.randint(3, 7))]
    paras.insert(1, extra)
    return "\n\n".join(paras) + "\n"


def jekyll(rng, posts, i, day, slug):
    ext = ".markdown" if i % 2 else ".md"
    stamp = day.strftime("%Y-%m-%d %H:%M:%S") + " -0700"
    tags = " ".join(rng.sample(TAGS, 2))
    extra = ("{%% highlight ruby %%}\nputs \"%s\"\n{%% endhighlight %%}\n\nSee also "
             "[the first post]({%% post_url %s %%})." % (slug, FIRST_JEKYLL))
    text = ("---\nlayout: post\ntitle: \"%s\"\ndate: %s\ncategories: [%s]\ntags: %s\n"
            "redirect_from:\n  - /blog/%s.html\nauthor: someone\n---\n\n%s"
            % (sentence(rng, 4)[:-1], stamp, rng.choice(["news", "release"]), tags, slug,
               body(rng, extra)))
    (posts / ("%s-%s%s" % (day.strftime("%Y-%m-%d"), slug, ext))).write_text(text)


def hugo(rng, posts, i, day, slug):
    folder = posts / "hugo" / slug
    folder.mkdir(parents=True)
    (folder / "cover.png").write_bytes(PIXEL)
    extra = ("![A picture](cover.png)\n\n{{< figure src=\"cover.png\" caption=\"%s\" >}}\n\n"
             "{{< youtube dQw4w9WgXcQ >}}" % sentence(rng, 3))
    tags = ", ".join('"%s"' % t for t in rng.sample(TAGS, 3))
    text = ("+++\ntitle = \"%s\"\ndate = %s\nlastmod = %s\ntags = [%s]\n"
            "aliases = [\"/old/%s/\"]\ndraft = %s\n+++\n\n%s"
            % (sentence(rng, 5)[:-1], day.strftime("%Y-%m-%dT%H:%M:%S+02:00"),
               (day + datetime.timedelta(days=3)).strftime("%Y-%m-%d"), tags, slug,
               "true" if i % 50 == 0 else "false", body(rng, extra)))
    (folder / "index.md").write_text(text)


def zola(rng, posts, i, day, slug):
    section = posts / "zola" / ("inside" if i % 2 else "main")
    section.mkdir(parents=True, exist_ok=True)
    index = section / "_index.md"
    if not index.exists():
        index.write_text("+++\ntitle = \"Section\"\nsort_by = \"date\"\n+++\n")
    extra = "{{ figure(src=\"/img/%s.svg\", caption=\"%s\") }}" % (slug, sentence(rng, 3))
    tags = ", ".join('"%s"' % t for t in rng.sample(TAGS, 2))
    text = ("+++\ntitle = \"%s\"\npath = \"%s/%s\"\ndescription = \"%s\"\n\n[taxonomies]\n"
            "tags = [%s]\n\n[extra]\nteam = \"x\"\n+++\n\n%s"
            % (sentence(rng, 4)[:-1], day.strftime("%Y/%m/%d"), slug, sentence(rng, 8), tags,
               body(rng, extra)))
    (section / ("%s.md" % slug)).write_text(text)


FIRST_JEKYLL = "2013-06-28-first"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip())
    site, n = Path(sys.argv[1]), int(sys.argv[2])
    posts = site / "posts"
    posts.mkdir(parents=True)
    (site / "shortcodes").mkdir()
    (site / "shortcodes" / "figure.html").write_text(
        "<figure><img src=\"{{ src }}\" alt=\"\"><figcaption>{{ caption }}</figcaption></figure>\n")
    (posts / ("%s.md" % FIRST_JEKYLL)).write_text("---\ntitle: First\n---\nThe first.\n")
    rng = random.Random(SEED)
    for i in range(n - 1):
        day = LAST_DAY - SPAN * rng.random()
        slug = "%s-%s-%d" % (rng.choice(WORDS), rng.choice(WORDS), i)
        (jekyll, hugo, zola)[i % 3](rng, posts, i, day, slug)


if __name__ == "__main__":
    main()
