// DPoP interop: panva's openid-client (its own DPoP implementation, on oauth4webapi and WebCrypto;
// not Tether's proof builder) obtains a DPoP-bound token from `tether serve` and uses it through
// `tether gateway`.
//
// Usage: node dpop.mjs ISSUER CLIENT_ID CLIENT_SECRET RESOURCE_URL
// (trust for both servers' CAs through NODE_EXTRA_CA_CERTS). Prints one JSON line; exit 0 = pass.
import * as client from 'openid-client';
import * as jose from 'jose';

const [issuer, clientId, clientSecret, resource] = process.argv.slice(2);
const facts = {};
const fail = (msg) => {
  console.log(JSON.stringify({ ok: false, error: msg, facts }));
  process.exit(1);
};
const assert = (c, msg) => c || fail(msg);

try {
  const conf = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret));
  const md = conf.serverMetadata();
  assert(md.dpop_signing_alg_values_supported?.includes('ES256'), 'discovery advertises ES256 for DPoP');

  const keyPair = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(conf, keyPair);
  const tokens = await client.clientCredentialsGrant(conf, { scope: 'orders' }, { DPoP });
  facts.token_type = tokens.token_type;
  assert(tokens.token_type === 'dpop', `token_type is DPoP (got ${tokens.token_type})`);
  const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey));
  const claims = jose.decodeJwt(tokens.access_token);
  facts.cnf = claims.cnf;
  assert(claims.cnf?.jkt === jkt, `cnf.jkt is the thumbprint of openid-client's key (${claims.cnf?.jkt} vs ${jkt})`);

  const url = new URL(resource);
  const ok = await client.fetchProtectedResource(conf, tokens.access_token, url, 'GET', undefined, undefined, { DPoP });
  facts.with_proof = ok.status;
  if (ok.status !== 200) fail(`the gateway refused openid-client's proof: ${ok.status} ${await ok.text()}`);
  const echo = await ok.json();
  assert(echo.headers.authorization === `Bearer ${tokens.access_token}`, 'the upstream sees Bearer');
  assert(!('dpop' in echo.headers), 'the upstream sees no DPoP header');

  const bearer = await fetch(url, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  facts.as_bearer = bearer.status;
  assert(bearer.status === 401, `a downgrade to Bearer is refused (got ${bearer.status})`);

  const other = client.getDPoPHandle(conf, await client.randomDPoPKeyPair('ES256'));
  let otherStatus;
  try {
    const r = await client.fetchProtectedResource(conf, tokens.access_token, url, 'GET', undefined, undefined, { DPoP: other });
    otherStatus = r.status;
  } catch (e) {
    otherStatus = e?.response?.status ?? e?.status ?? String(e?.code ?? e);
  }
  facts.other_key = otherStatus;
  assert(otherStatus === 401, `a proof from another key is refused (got ${otherStatus})`);
  console.log(JSON.stringify({ ok: true, facts }));
} catch (e) {
  fail(`${e?.code ?? ''} ${e?.message ?? e} ${e?.cause ? JSON.stringify(e.cause) : ''}`);
}
