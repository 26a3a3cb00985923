-- wrk script: token introspection (RFC 7662) of one fixed token.
-- BENCH_BASIC = base64("client_id:client_secret") of a client allowed to introspect,
-- BENCH_TOKEN = the access token to introspect; both set by bench/run.
local basic = os.getenv("BENCH_BASIC")
local token = os.getenv("BENCH_TOKEN")
if basic == nil or basic == "" then
  error("BENCH_BASIC is not set")
end
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
wrk.method = "POST"
-- Tokens are base64url / JWS compact: no characters that need form-encoding.
wrk.body = "token=" .. token
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
