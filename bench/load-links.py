#!/usr/bin/env python3
"""Insert N short links straight into a stopped nib's database, in one transaction.

    load-links.py DB N CODES_FILE

Creating 100,000 links through the API costs one fsynced commit each (minutes), so the
bench writes them here instead, into the `links` table of src/db.rs (migration 2):
code, url, title, created_at, clicks, custom. Codes are 'b' + base62(i) padded to 6
digits: 7 characters, so they never collide with nib's generated codes (at most 6
characters for the first 50 million links) and each is distinct. Targets are
https://example.com/page/<i>, created now. Every code is written to CODES_FILE, one a
line, for bench/links.lua. nib must not be running.
"""

import sqlite3
import sys
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(n, width):
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(ALPHABET[r])
    return "".join(reversed(digits)).rjust(width, "0")


def main():
    db_path, n, codes_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    now = int(time.time())
    codes = ["b" + base62(i, 6) for i in range(n)]
    db = sqlite3.connect(db_path, isolation_level=None)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < 2:
        sys.exit(f"load-links.py: {db_path} is at schema version {version}, links need 2")
    before = db.execute("SELECT count(*) FROM links").fetchone()[0]
    t0 = time.monotonic()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO links(code, url, title, created_at, clicks, custom) VALUES (?, ?, '', ?, 0, 0)",
        ((c, f"https://example.com/page/{i}", now) for i, c in enumerate(codes)),
    )
    db.execute("COMMIT")
    secs = time.monotonic() - t0
    # Leave the file as nib leaves it after a clean stop: everything in the main file.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = db.execute("SELECT count(*) FROM links").fetchone()[0]
    db.close()
    with open(codes_path, "w") as f:
        f.write("\n".join(codes) + "\n")
    print(f"  inserted {after - before} links in {secs:.2f} s ({before} before, {after} now)")


if __name__ == "__main__":
    main()
