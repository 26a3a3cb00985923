#!/usr/bin/env python3
"""Soak driver for bench/soak (Python 3 standard library only).

Drives a bounded mixed load against one `tether serve` on loopback for a fixed time: issuance
(client_credentials JWT and opaque, password), introspection, refresh, revocation, and sign-ins
through the login page with a cookie jar (plus SSO re-authorizations with the session cookie),
each ending in a code redemption. Samples the server's VmRSS, counts errors, prints a Markdown
report and exits 0 only when there were no errors and the RSS stayed flat.

Usage (bench/soak sets all of this up): soak.py --port P --ca CA.pem --pid PID --apps apps.json
"""

import argparse
import base64
import hashlib
import html.parser
import http.client
import json
import os
import random
import secrets
import ssl
import sys
import threading
import time
import urllib.parse

REDIRECT_URI = "https://app.example/cb"
USERNAME = "soak-user"

# Operation weights in the mix (the password grant and sign-ins each cost one argon2id check).
MIX = [
    ("cc_jwt", 25),
    ("cc_opaque", 15),
    ("introspect", 30),
    ("password", 4),
    ("refresh", 12),
    ("revoke", 4),
    ("signin", 3),
    ("sso", 7),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True, help="the server's CA certificate (PEM)")
    p.add_argument("--pid", type=int, required=True, help="the server's process id (for VmRSS)")
    p.add_argument("--apps", required=True, help="JSON: client ids and secrets, user password")
    p.add_argument("--duration", type=float, default=600, help="seconds in all, warm-up included")
    p.add_argument("--warmup", type=float, default=60, help="seconds before the start RSS sample")
    p.add_argument("--workers", type=int, default=8, help="concurrent keep-alive connections")
    p.add_argument("--rate", type=float, default=300, help="request rate cap, requests/s (0: none)")
    p.add_argument("--sample", type=float, default=30, help="seconds between RSS samples")
    p.add_argument("--tolerance", type=float, default=10, help="allowed RSS change after warm-up, %%")
    p.add_argument("--out", help="also write the report here")
    return p.parse_args()


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Limiter:
    """A shared request-rate cap: every request takes the next free slot."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {}  # op -> {"n", "errors", "lat": [seconds]}
        self.samples = []  # first error messages

    def record(self, op, seconds, error=None):
        with self.lock:
            s = self.ops.setdefault(op, {"n": 0, "errors": 0, "lat": []})
            s["n"] += 1
            if seconds is not None:
                s["lat"].append(seconds)
            if error:
                s["errors"] += 1
                if len(self.samples) < 20:
                    self.samples.append(f"{op}: {error}")


class Hidden(html.parser.HTMLParser):
    """The hidden inputs of a form (values unescaped by the parser)."""

    def __init__(self):
        super().__init__()
        self.fields = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and "name" in a:
            self.fields.append((a["name"], a.get("value") or ""))


class Worker(threading.Thread):
    def __init__(self, n, args, apps, ctx, limiter, stats, stop):
        super().__init__(name=f"soak-{n}", daemon=True)
        self.args, self.apps, self.ctx = args, apps, ctx
        self.limiter, self.stats, self.stop = limiter, stats, stop
        self.rng = random.Random(n)
        self.conn = None
        self.cc_tokens = []  # recent client_credentials tokens (never revoked)
        self.access = None  # the password grant's current pair
        self.refresh_token = None
        self.jar = {}  # cookie name -> value (one browser per worker)
        self.ops = [op for op, w in MIX for _ in range(w)]

    # ---- HTTP

    def request(self, op, method, path, body=None, headers=None, expect=(200,)):
        """One request; returns (status, headers, body), or None after a socket error or a status
        outside `expect` (both counted as errors)."""
        self.limiter.wait()
        h = {}
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(body)
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        h.update(headers or {})
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.args.host, self.args.port, context=self.ctx, timeout=30)
            self.conn.request(method, path, body=body, headers=h)
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.stats.record(op, None, f"socket error: {e!r}")
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None
        elapsed = time.perf_counter() - started
        for c in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = c.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in c.lower():
                self.jar[name.strip()] = value
            else:
                self.jar.pop(name.strip(), None)
        error = None
        if r.status not in expect:
            error = f"{method} {path.split('?')[0]} -> HTTP {r.status}: {data[:200]!r}"
        self.stats.record(op, elapsed, error)
        return (r.status, r.headers, data) if error is None else None

    def json_ok(self, op, resp, check):
        """Decode a JSON answer and apply `check`; a failed check counts as an error."""
        if resp is None:
            return None
        try:
            v = json.loads(resp[2])
        except ValueError:
            v = None
        if v is None or not check(v):
            self.stats.record(op + " (check)", None, f"unexpected answer: {resp[2][:200]!r}")
            return None
        return v

    # ---- operations

    def token(self, op, app, form):
        a = self.apps[app]
        r = self.request(op, "POST", "/oauth2/token", form, {"Authorization": basic(a["id"], a["secret"])})
        return self.json_ok(op, r, lambda v: isinstance(v.get("access_token"), str))

    def cc(self, op, app):
        v = self.token(op, app, {"grant_type": "client_credentials"})
        if v:
            self.cc_tokens = (self.cc_tokens + [v["access_token"]])[-16:]

    def introspect(self, token, active, op="introspect"):
        a = self.apps["jwt"]
        r = self.request(op, "POST", "/oauth2/introspect", {"token": token}, {"Authorization": basic(a["id"], a["secret"])})
        self.json_ok(op, r, lambda v: v.get("active") is active)

    def password(self):
        form = {"grant_type": "password", "username": USERNAME, "password": self.apps["password"]}
        v = self.token("password", "opaque", form)
        if v:
            self.access, self.refresh_token = v["access_token"], v.get("refresh_token")

    def refresh(self):
        if not self.refresh_token:
            return self.password()
        v = self.token("refresh", "opaque", {"grant_type": "refresh_token", "refresh_token": self.refresh_token})
        # A failed refresh leaves the chain unknown: start a new one next time.
        self.access, self.refresh_token = (v["access_token"], v.get("refresh_token")) if v else (None, None)

    def revoke(self):
        if not self.access:
            return self.password()
        a = self.apps["opaque"]
        token, self.access, self.refresh_token = self.access, None, None
        r = self.request("revoke", "POST", "/oauth2/revoke", {"token": token}, {"Authorization": basic(a["id"], a["secret"])})
        if r is not None:
            self.introspect(token, False, op="introspect revoked")

    def authorize_query(self, prompt_login):
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        q = {
            "response_type": "code",
            "client_id": self.apps["web"]["id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile",
            "state": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if prompt_login:
            q["prompt"] = "login"
        return "/oauth2/authorize?" + urllib.parse.urlencode(q), verifier

    def redeem(self, op, resp, verifier):
        loc = resp[1].get("Location", "")
        code = urllib.parse.parse_qs(urllib.parse.urlparse(loc).query).get("code", [None])[0]
        if not loc.startswith(REDIRECT_URI) or not code:
            self.stats.record(op + " (check)", None, f"redirect without a code: {loc[:200]!r}")
            return
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
        self.token(op + " code", "web", form)

    def signin(self):
        path, verifier = self.authorize_query(prompt_login=True)
        r = self.request("signin page", "GET", path)
        if r is None:
            return
        form = Hidden()
        form.feed(r[2].decode("utf-8", "replace"))
        fields = dict(form.fields)
        if "authz" not in fields or "csrf" not in fields:
            self.stats.record("signin page (check)", None, "no sign-in form in the page")
            return
        fields.update({"username": USERNAME, "password": self.apps["password"]})
        r = self.request("signin post", "POST", "/oauth2/authorize", fields, expect=(303,))
        if r is not None:
            self.redeem("signin", r, verifier)

    def sso(self):
        if "tether_session" not in self.jar:
            return self.signin()
        path, verifier = self.authorize_query(prompt_login=False)
        r = self.request("sso authorize", "GET", path, expect=(303,))
        if r is not None:
            self.redeem("sso", r, verifier)

    def run(self):
        while not self.stop.is_set():
            op = self.rng.choice(self.ops)
            if op == "cc_jwt":
                self.cc("cc_jwt", "jwt")
            elif op == "cc_opaque":
                self.cc("cc_opaque", "opaque")
            elif op == "introspect":
                if self.cc_tokens:
                    self.introspect(self.rng.choice(self.cc_tokens), True)
                else:
                    self.cc("cc_jwt", "jwt")
            else:
                getattr(self, op)()
        if self.conn is not None:
            self.conn.close()


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    args = parse_args()
    with open(args.apps) as f:
        apps = json.load(f)
    ctx = ssl.create_default_context(cafile=args.ca)
    stats, stop = Stats(), threading.Event()
    limiter = Limiter(args.rate)
    workers = [Worker(i, args, apps, ctx, limiter, stats, stop) for i in range(args.workers)]
    started = time.monotonic()
    for w in workers:
        w.start()

    samples = []  # (seconds since start, kB)
    rss_start = None
    next_sample = 0.0
    warmup_done = False
    died = False
    while True:
        now = time.monotonic() - started
        if now >= args.duration:
            break
        if not warmup_done and now >= args.warmup:
            warmup_done = True
            rss_start = rss_kb(args.pid)
            samples.append((now, rss_start))
            next_sample = now + args.sample
        elif now >= next_sample:
            samples.append((now, rss_kb(args.pid)))
            next_sample = now + args.sample
        if samples and samples[-1][1] is None:
            died = True
            break
        time.sleep(min(0.5, max(0.01, args.duration - now)))
    end_s = time.monotonic() - started
    rss_end = rss_kb(args.pid)
    samples.append((end_s, rss_end))
    stop.set()
    for w in workers:
        w.join(timeout=40)
    if rss_end is None:
        died = True

    # ---- report
    total = sum(s["n"] for s in stats.ops.values())
    errors = sum(s["errors"] for s in stats.ops.values())
    lines = [
        "# Tether soak",
        "",
        f"- duration: {end_s:.0f} s (warm-up {args.warmup:.0f} s), {args.workers} keep-alive connections, "
        f"rate cap {args.rate:g} req/s" if args.rate else f"- duration: {end_s:.0f} s, no rate cap",
        f"- requests: {total} ({total / end_s:.0f}/s), errors: {errors}",
        "",
        "| operation | requests | errors | req/s | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op in sorted(stats.ops):
        s = stats.ops[op]
        lat = [x * 1000 for x in s["lat"]]
        lines.append(
            f"| {op} | {s['n']} | {s['errors']} | {s['n'] / end_s:.1f} | {percentile(lat, 50):.2f} | "
            f"{percentile(lat, 99):.2f} | {max(lat) if lat else float('nan'):.2f} |"
        )
    lines += ["", "| t (s) | server VmRSS (MB) |", "| ---: | ---: |"]
    for t, kb in samples:
        lines.append(f"| {t:.0f} | {kb / 1024:.1f} |" if kb is not None else f"| {t:.0f} | (gone) |")
    flat = False
    if rss_start and rss_end:
        change = (rss_end - rss_start) / rss_start * 100
        after = [kb for t, kb in samples if kb is not None and t >= args.warmup]
        flat = abs(change) <= args.tolerance
        lines += [
            "",
            f"RSS after warm-up: start {rss_start / 1024:.1f} MB, end {rss_end / 1024:.1f} MB "
            f"({change:+.1f}%; min {min(after) / 1024:.1f}, max {max(after) / 1024:.1f}): "
            + ("flat" if flat else "NOT flat") + f" (tolerance ±{args.tolerance:g}%)",
        ]
        # Growth that stops (caches filling) and growth that goes on (a leak) look alike in the
        # verdict; the second half tells them apart.
        mid = args.warmup + (end_s - args.warmup) / 2
        half = [kb for t, kb in samples if kb is not None and t >= mid]
        if len(half) >= 2:
            lines.append(
                f"second half ({mid:.0f}-{end_s:.0f} s): {half[0] / 1024:.1f} -> {half[-1] / 1024:.1f} MB "
                f"({(half[-1] - half[0]) / half[0] * 100:+.1f}%)"
            )
    elif died:
        lines += ["", "the server process is gone"]
    else:
        lines += ["", "no RSS sample after warm-up (is the duration longer than the warm-up?)"]
    if stats.samples:
        lines += ["", "first errors:"] + [f"- `{e}`" for e in stats.samples]
    ok = errors == 0 and flat and not died
    lines += ["", f"verdict: {'PASS' if ok else 'FAIL'} (errors {errors}, RSS {'flat' if flat else 'not flat'})"]
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
