-- client_secret_jwt (RFC 7523): the app's secret sealed under the master key (AES-256-GCM,
-- base64url), since an assertion's HMAC cannot be checked against a hash. Only apps registered
-- for client_secret_jwt have one; every other app keeps only the hash.
ALTER TABLE apps ADD COLUMN sealed_secret TEXT;
