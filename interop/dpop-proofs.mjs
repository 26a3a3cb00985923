// DPoP proofs (RFC 9449) made by an independent implementation — panva's jose, on WebCrypto —
// for Tether's tests to check against (crates/tether-core/tests/dpop_oracle.rs,
// crates/tether/tests/it/dpop_algs.rs). Tether's own code makes neither the keys, the proofs nor
// the thumbprints here.
//
// Input: one batch per line of JSON on stdin (or one batch as the first argument). A batch is an
// array of requests, or {"requests": [...]}. A request is either
//   {"alg", "htm", "htu", "iat"?, "access_token"?, "ath"?, "nonce"?, "count"?, "key"?}
//     sign `count` (default 1) proofs with the key labelled `key` (default: the alg), which is
//     generated on first use and kept for the rest of the run, so later batches can sign with it
//     (e.g. a resource request with the `ath` of a token obtained with an earlier proof).
//     `ath` is base64url(SHA-256(access_token)) when `access_token` is given, or `ath` verbatim.
//     `iat` defaults to the current time.
//   {"thumbprint": JWK}
//     only jose's RFC 7638 thumbprint of the given JWK.
// Output: one line of JSON per batch, {"ok": true, "results": [...]}, with per signing request
//   {"alg", "key", "jwk" (public), "jkt", "proof" (the first), "proofs" (all `count`)}
// and per thumbprint request {"jkt"}. jkt is jose's calculateJwkThumbprint(publicJwk, 'sha256').
// On an error: {"ok": false, "error"} and exit status 1.
//
// Keys: ES256/ES384/ES512 on P-256/P-384/P-521, EdDSA on Ed25519, RS*/PS* 2048-bit RSA.
import { createHash, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import * as jose from 'jose';

const keys = new Map();

async function keyFor(label, alg) {
  let k = keys.get(label);
  if (!k) {
    const opts = { extractable: true };
    if (alg === 'EdDSA') opts.crv = 'Ed25519';
    if (/^(RS|PS)/.test(alg)) opts.modulusLength = 2048;
    const { privateKey, publicKey } = await jose.generateKeyPair(alg, opts);
    const jwk = await jose.exportJWK(publicKey);
    k = { alg, privateKey, jwk, jkt: await jose.calculateJwkThumbprint(jwk, 'sha256') };
    keys.set(label, k);
  }
  if (k.alg !== alg) throw new Error(`key ${label} was made for ${k.alg}, not ${alg}`);
  return k;
}

async function handle(req) {
  if (req.thumbprint) return { jkt: await jose.calculateJwkThumbprint(req.thumbprint, 'sha256') };
  const { alg, htm, htu } = req;
  if (typeof alg !== 'string' || typeof htm !== 'string' || typeof htu !== 'string') {
    throw new Error(`a request needs alg, htm and htu: ${JSON.stringify(req)}`);
  }
  const label = req.key ?? alg;
  const k = await keyFor(label, alg);
  const claims = { htm, htu };
  if (req.access_token != null) claims.ath = createHash('sha256').update(req.access_token).digest('base64url');
  else if (req.ath != null) claims.ath = req.ath;
  if (req.nonce != null) claims.nonce = req.nonce;
  const proofs = [];
  for (let i = 0; i < (req.count ?? 1); i++) {
    proofs.push(
      await new jose.SignJWT(claims)
        .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: k.jwk })
        .setJti(randomBytes(16).toString('base64url'))
        .setIssuedAt(req.iat ?? Math.floor(Date.now() / 1000))
        .sign(k.privateKey),
    );
  }
  return { alg, key: label, jwk: k.jwk, jkt: k.jkt, proof: proofs[0], proofs };
}

async function batch(text) {
  const input = JSON.parse(text);
  const requests = Array.isArray(input) ? input : input.requests;
  if (!Array.isArray(requests)) throw new Error('a batch is an array of requests or {"requests": [...]}');
  const results = [];
  for (const r of requests) results.push(await handle(r));
  return results;
}

function fail(e) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(e?.stack ?? e) })}\n`);
  process.exit(1);
}

try {
  if (process.argv[2] != null) {
    process.stdout.write(`${JSON.stringify({ ok: true, results: await batch(process.argv[2]) })}\n`);
  } else {
    for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
      if (!line.trim()) continue;
      process.stdout.write(`${JSON.stringify({ ok: true, results: await batch(line) })}\n`);
    }
  }
} catch (e) {
  fail(e);
}
