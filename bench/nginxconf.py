"""The nginx configurations of bench/bench.py: the deploy front end made into a loopback
config, and the one-worker baselines nib is compared with. Each writes DIR/nginx.conf
and keeps the instance's pid, logs and temporary files inside DIR.
"""

import re
from pathlib import Path

from harness import die

# The literal tokens of deploy/nginx.conf the front end rewrites; that file lists them
# in its header, and the bench fails loudly when one is gone.
DEPLOY_TOKENS = [
    "user www-data;", "worker_processes auto;", "pid /run/nginx.pid;",
    "/var/log/nginx/error.log", "/var/log/nginx/access.log", "127.0.0.1:8080",
    "limit_conn perip 16;", "listen 443 ssl", "/srv/nib/static/", "# tls",
    "# BEGIN http-redirect", "# END http-redirect",
]
# Anything left that would reach outside the instance's directory or loopback.
LEFTOVER = re.compile(r"/var/log/nginx|/run/nginx|/srv/nib|letsencrypt|ssl|127\.0\.0\.1:8080[^0-9]"
                      r"|listen +(80|443)[^0-9]")


def temp_paths(d):
    """Lines every generated config needs: temp files inside the instance's directory
    (the compiled-in defaults live under /var/lib/nginx)."""
    return "".join("    %s_temp_path %s/%s;\n" % (t, d, t)
                   for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def front_conf(bench, d, port, upstream):
    """deploy/nginx.conf made into a loopback config: listen on 127.0.0.1:PORT, proxy to
    127.0.0.1:UPSTREAM, alias static/ to the generated site, one worker, files in D,
    plain HTTP (TLS lines and the 80 -> 443 redirect server dropped). The per-address
    connection cap is lifted because every wrk connection comes from 127.0.0.1. Comments
    are stripped so the leftover check only looks at directives."""
    d = Path(d)
    deploy = (bench.repo / "deploy" / "nginx.conf").read_text()
    for token in DEPLOY_TOKENS:
        if token not in deploy:
            die("deploy/nginx.conf lost the token '%s' the bench replaces" % token)
    d.mkdir(parents=True, exist_ok=True)
    subs = [
        (r"^user www-data;", bench.user_line),
        (r"^worker_processes auto;", "worker_processes 1;"),
        (r"^pid /run/nginx.pid;", "pid %s/nginx.pid;" % d),
        (r"/var/log/nginx/error\.log", "%s/error.log" % d),
        (r"/var/log/nginx/access\.log", "%s/access.log" % d),
        (r"127\.0\.0\.1:8080", "127.0.0.1:%d" % upstream),
        (r"limit_conn perip 16;", "limit_conn perip 1000;"),
        (r"listen 443 ssl[^;]*;", "listen 127.0.0.1:%d;" % port),
        (r"/srv/nib/static/", "%s/static/" % bench.site),
    ]
    out, skipping = [], False
    for line in deploy.splitlines():
        if "# BEGIN http-redirect" in line:
            skipping = True
        if skipping:
            skipping = "# END http-redirect" not in line
            continue
        if re.search(r"# tls$", line):
            continue
        line = re.sub(r"\s*#.*$", "", line)
        if not line.strip():
            continue
        for pat, rep in subs:
            line = re.sub(pat, rep.replace("\\", "\\\\"), line)
        out.append(line + "\n")
        if re.match(r"^http \{", line):
            out.append(temp_paths(d))
    text = "".join(out)
    (d / "nginx.conf").write_text(text)
    bad = [l for l in text.splitlines() if LEFTOVER.search(l)]
    if bad:
        die("%s/nginx.conf: these lines escaped the loopback rewrite of deploy/nginx.conf: %s"
            % (d, "; ".join(bad)))


def baseline_conf(bench, d, body):
    """A one-worker nginx for a baseline, its files in D: the lines every baseline
    shares, then BODY inside the http block."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf").write_text(
        "%s\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
        "events { worker_connections 1024; }\nhttp {\n%s"
        "    access_log %s/access.log combined;\n    server_tokens off;\n%s\n}\n"
        % (bench.user_line, d, d, temp_paths(d), d, body))


def origin_conf(bench, d, port, root, ctype):
    """The post page baseline: nginx serving the saved page bytes from ROOT with nib's
    Content-Type and nosniff header."""
    baseline_conf(bench, d, """    sendfile on;
    tcp_nopush on;
    server {
        listen 127.0.0.1:%d;
        root %s;
        types { }
        default_type "%s";
        add_header X-Content-Type-Options nosniff;
    }""" % (port, root, ctype))


def redirect_conf(bench, d, port, code, target):
    """The redirect baseline: `return 302` for the one code, with the headers nib sends
    on a redirect (nosniff, Cache-Control) so both answers carry the same information;
    anything else is 404."""
    baseline_conf(bench, d, """    server {
        listen 127.0.0.1:%d;
        location = /%s {
            add_header X-Content-Type-Options nosniff;
            add_header Cache-Control "private, max-age=0";
            return 302 %s;
        }
    }""" % (port, code, target))
