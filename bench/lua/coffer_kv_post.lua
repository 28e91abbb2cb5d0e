-- coffer_kv_post.lua - KV v2 write through coffer's Vault mount, a new version per request:
--   POST /v1/secret/data/<o>/<p>/<e>/<KEY>   body {"data":{5 fields x ~40 bytes}} (the OpenBao
--   kit's post.lua body)
-- Env: TOKEN, WRITE_PATH (/v1/secret/data/<o>/<p>/<e>/<KEY>), SPREAD (default 1: every
--   request writes <KEY>; N>1 cycles over <KEY>_0 .. <KEY>_(N-1), names coffer accepts), LUA_DIR
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
local path = os.getenv("WRITE_PATH")
if path == nil or path == "" then error("WRITE_PATH env var is required") end
local spread = tonumber(os.getenv("SPREAD") or "1")

local body = '{"data":{' ..
  '"db_username":"svc-orders-readwrite-prod-eu-west-1-0001",' ..
  '"db_password":"Zq8#vN2!pL6@rT9$wX3%yB5^cD7&fH1*gJ4(kM",' ..
  '"api_key":"ak_live_51HkT9sK2eZvKYlo2C8Xq7Wm3Rn4Pp",' ..
  '"jwt_signing_secret":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",' ..
  '"smtp_password":"mJ7qR2xW9vL4nB8cT1zK6pY3sF5gH0dA"}}'

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["X-Vault-Token"] = TOKEN
wrk.headers["Content-Type"] = "application/json"

if spread > 1 then
  local i = 0
  request = function()
    i = (i + 1) % spread
    return wrk.format("POST", path .. "_" .. i, nil, body)
  end
end
