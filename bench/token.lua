-- wrk script: client_credentials grant, HTTP Basic client authentication.
-- BENCH_BASIC = base64("client_id:client_secret"), set by bench/run.
local basic = os.getenv("BENCH_BASIC")
if basic == nil or basic == "" then
  error("BENCH_BASIC is not set")
end
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
