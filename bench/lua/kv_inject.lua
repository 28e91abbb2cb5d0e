-- kv_inject.lua (copy of the OpenBao kit's inject.lua) - "inject" transaction: a client fetches every secret under a
-- prefix.  Vault/OpenBao KV v2 has no bulk read, so one inject =
--   1 x LIST  GET /v1/<KV_MOUNT>/metadata/<INJECT_PREFIX>/?list=true
--   N x GET   /v1/<KV_MOUNT>/data/<INJECT_PREFIX>/<key>   (keys taken from the LIST)
-- issued sequentially on one keep-alive connection.
-- RUN WITH -t == -c (one connection per wrk thread) so each thread's requests
-- form one sequential client; per-inject latency is measured with
-- clock_gettime(CLOCK_MONOTONIC) via LuaJIT FFI.
-- Env: TOKEN, KV_MOUNT (secret), INJECT_PREFIX (inject), LUA_DIR
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
local prefix = os.getenv("INJECT_PREFIX") or "inject"

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec_t;
int clock_gettime(int clk_id, wrk_timespec_t *tp);
]]
local ts = ffi.new("wrk_timespec_t")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

-- per-thread state (globals so done() can read them via thread:get)
lat = {}          -- completed inject latencies, microseconds
injects = 0
failed = 0
local keys = {}
local step = 0    -- 0 = LIST pending; k = GET of keys[k] pending
local t0 = 0
local list_req, get_reqs

local function build_gets()
  get_reqs = {}
  for k, name in ipairs(keys) do
    get_reqs[k] = wrk.format("GET", kv_data_path(prefix .. "/" .. name),
                             {["X-Vault-Token"] = TOKEN})
  end
end

function init(args)
  list_req = wrk.format("GET", kv_meta_path(prefix .. "/") .. "?list=true",
                        {["X-Vault-Token"] = TOKEN})
end

function request()
  if step == 0 then
    t0 = now_us()
    return list_req
  end
  return get_reqs[step]
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1; step = 0; return
  end
  if step == 0 then
    -- parse "keys":["a","b",...] from the LIST response (the client must use it)
    local arr = body:match('"keys":%[(.-)%]')
    local newkeys = {}
    if arr then for k in arr:gmatch('"([^"]+)"') do newkeys[#newkeys + 1] = k end end
    if #newkeys == 0 then failed = failed + 1; return end
    if #newkeys ~= #keys then keys = newkeys; build_gets()
    else
      for i = 1, #keys do if keys[i] ~= newkeys[i] then keys = newkeys; build_gets(); break end end
    end
    step = 1
  else
    if step >= #keys then
      lat[#lat + 1] = now_us() - t0
      injects = injects + 1
      step = 0
    else
      step = step + 1
    end
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local all, n_inj, n_fail = {}, 0, 0
  for _, t in ipairs(threads) do
    local l = t:get("lat")
    for i = 1, #l do all[#all + 1] = l[i] end
    n_inj = n_inj + t:get("injects")
    n_fail = n_fail + t:get("failed")
  end
  table.sort(all)
  local function pct(p)
    if #all == 0 then return 0 end
    local idx = math.max(1, math.min(#all, math.ceil(p / 100 * #all)))
    return all[idx] / 1000
  end
  local sum = 0
  for i = 1, #all do sum = sum + all[i] end
  local dur_s = summary.duration / 1e6
  io.write(string.format(
    'RESULT {%s,"injects":%d,"inject_failed":%d,"injects_per_s":%.2f,' ..
    '"inject_mean_ms":%.3f,"inject_p50_ms":%.3f,"inject_p90_ms":%.3f,' ..
    '"inject_p99_ms":%.3f,"inject_max_ms":%.3f}\n',
    result_fields(summary, latency), n_inj, n_fail, n_inj / dur_s,
    (#all > 0) and (sum / #all / 1000) or 0, pct(50), pct(90), pct(99),
    (#all > 0) and (all[#all] / 1000) or 0))
end
