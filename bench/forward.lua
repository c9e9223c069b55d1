-- wrk script for a forward proxy: send absolute-form requests.
-- ORIGIN_HOSTPORT (e.g. 127.0.0.1:8080) is set by bench/run.sh.
local origin = os.getenv("ORIGIN_HOSTPORT") or "127.0.0.1:8080"
wrk.method = "GET"
wrk.path = "http://" .. origin .. "/"
wrk.headers["Host"] = origin
