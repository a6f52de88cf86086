-- wrk script for benchmarks/serve.py: POSTs one fixed body and times every request itself.
-- wrk's own latency statistics add synthetic samples when responses are slow; this script
-- measures each request from send to response instead. Run it with one connection per
-- thread (-t N -c N) so that requests and responses on a thread pair up in order.
-- Environment: WRK_BODY_FILE (the JSON body), WRK_PATH (default /predict).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } mlcd_timespec;
int clock_gettime(int clk_id, mlcd_timespec *tp);
]]
local ts = ffi.new("mlcd_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
  local body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.path = os.getenv("WRK_PATH") or "/predict"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  req = wrk.format()
  lat = {}
  n = 0
  bad = 0
  t0 = 0
end

function request()
  t0 = now_us()
  return req
end

function response(status, headers, body)
  n = n + 1
  lat[n] = now_us() - t0
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local all = {}
  local nbad = 0
  for _, t in ipairs(threads) do
    local l = t:get("lat")
    local c = t:get("n")
    nbad = nbad + t:get("bad")
    for i = 1, c do all[#all + 1] = l[i] end
  end
  table.sort(all)
  local sum = 0
  for i = 1, #all do sum = sum + all[i] end
  local function pct(p)
    if #all == 0 then return 0 end
    local k = math.max(1, math.ceil(p / 100 * #all))
    return all[k]
  end
  local secs = summary.duration / 1e6
  io.write(string.format(
    "MLCD_RESULT {\"requests\": %d, \"seconds\": %.3f, \"non200\": %d, \"errors\": %d, " ..
    "\"mean_us\": %.1f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}\n",
    #all, secs, nbad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    #all > 0 and sum / #all or 0, pct(50), pct(90), pct(99), pct(100)))
end
