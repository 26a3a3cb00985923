-- The public part of a binding, shown as `cnf` (RFC 8705 x5t#S256, RFC 9449 jkt). Only values
-- that are not secret are kept here; secret binding values stay hashed (token-binding.md B-11).
ALTER TABLE access_tokens ADD COLUMN binding_cnf TEXT;
ALTER TABLE refresh_tokens ADD COLUMN binding_cnf TEXT;
