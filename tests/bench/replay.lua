-- replay.lua - wrk script: sends one fixed, pre-signed request over and over.
--
-- SigV4 signatures carry a date, not a nonce, so a request signed by bench.py a moment
-- before the run is valid for as long as the proxy's max_clock_skew (15 minutes) and can
-- be replayed unchanged. The request is static, so wrk formats it once per thread.
--
-- BENCH_SPEC names a file written by bench.py:
--   line 1       METHOD PATH
--   next lines   Name: value        (headers, up to an empty line)
--   after that   BODY path          (optional: the request body, sent as is)
-- done() prints one line "BENCH key=value ..." that bench.py parses.

local spec = os.getenv("BENCH_SPEC")
if spec == nil then
   error("replay.lua: set BENCH_SPEC")
end

local f = assert(io.open(spec, "rb"))
local method, path = f:read("*l"):match("^(%S+) (%S+)$")
local headers = {}
local body = nil
for line in f:lines() do
   if line == "" then
      break
   end
   local name, value = line:match("^([^:]+): (.*)$")
   headers[name] = value
end
local rest = f:read("*l")
f:close()
if rest ~= nil then
   local bodyfile = rest:match("^BODY (.+)$")
   local b = assert(io.open(bodyfile, "rb"))
   body = b:read("*a")
   b:close()
end

wrk.method = method
wrk.path = path
for name, value in pairs(headers) do
   wrk.headers[name] = value
end
wrk.body = body

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d " ..
      "err_write=%d err_status=%d err_timeout=%d " ..
      "lat_mean_us=%.1f lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
