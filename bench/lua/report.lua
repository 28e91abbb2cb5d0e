-- report.lua (copy of the OpenBao kit's report.lua) - shared helpers for the wrk scripts (loaded via dofile).
-- Env: TOKEN (required), KV_MOUNT (default "secret").
-- Prints one machine-readable line:  RESULT {json}
-- (latencies in ms; wrk's own per-request latency histogram).

TOKEN = os.getenv("TOKEN")
if TOKEN == nil or TOKEN == "" then error("TOKEN env var is required") end
KV_MOUNT = os.getenv("KV_MOUNT") or "secret"

function kv_data_path(p)  return "/v1/" .. KV_MOUNT .. "/data/" .. p end
function kv_meta_path(p)  return "/v1/" .. KV_MOUNT .. "/metadata/" .. p end

function result_fields(summary, latency)
  local e = summary.errors
  local dur_s = summary.duration / 1e6
  return string.format(
    '"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
    '"lat_mean_ms":%.3f,"lat_stdev_ms":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d',
    summary.requests, dur_s, summary.requests / dur_s, summary.bytes,
    latency.mean / 1000, latency.stdev / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout)
end

function done(summary, latency, requests)
  io.write("RESULT {" .. result_fields(summary, latency) .. "}\n")
end
