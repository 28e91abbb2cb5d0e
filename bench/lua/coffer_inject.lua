-- coffer_inject.lua - coffer native API, inject a whole environment in one request:
--   POST /api/v1/orgs/<o>/projects/<p>/environments/<e>/inject   -> {KEY: value, ...}
-- One request = one inject (every live secret of the environment decrypted).
-- Env: TOKEN (sent as X-Vault-Token), INJECT_PATH (the full path above), LUA_DIR
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
local path = os.getenv("INJECT_PATH")
if path == nil or path == "" then error("INJECT_PATH env var is required") end

wrk.method = "POST"
wrk.path = path
wrk.headers["X-Vault-Token"] = TOKEN
