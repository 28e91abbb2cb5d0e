-- coffer_reveal.lua - coffer native API, reveal one secret:
--   GET /api/v1/orgs/<o>/projects/<p>/environments/<e>/secrets/<KEY>?reveal=true
-- Env: TOKEN (sent as X-Vault-Token), REVEAL_PATH (the full path above), LUA_DIR
dofile((os.getenv("LUA_DIR") or ".") .. "/report.lua")
local path = os.getenv("REVEAL_PATH")
if path == nil or path == "" then error("REVEAL_PATH env var is required") end

wrk.method = "GET"
wrk.path = path
wrk.headers["X-Vault-Token"] = TOKEN
