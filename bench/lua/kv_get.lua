-- kv_get.lua - (copy of the OpenBao kit's get.lua) KV v2 read:  GET /v1/<KV_MOUNT>/data/<KV_PATH>  with X-Vault-Token.
-- Env: TOKEN, KV_MOUNT (secret), KV_PATH (bench/app), LUA_DIR (dir of report.lua)
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
local path = os.getenv("KV_PATH") or "bench/app"

wrk.method = "GET"
wrk.path = kv_data_path(path)
wrk.headers["X-Vault-Token"] = TOKEN
